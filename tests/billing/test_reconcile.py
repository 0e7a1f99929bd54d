"""Reconciliation and the operator commands: a process killed mid-operation leaves a hold that
reconciliation releases; the audit proves the books; credits and plans from the command line."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fakeredis import FakeAsyncRedis
from sqlalchemy import select, update

from lipika.billing.models import EntryKind, HoldStatus, Wallet
from lipika.billing.policy import Outcome
from lipika.billing.repository import WalletState
from lipika.billing.tasks import Reconciler, ReconcileReport, reconcile_forever
from lipika.db import utcnow
from tests.billing.conftest import LIPIKA
from tests.fixtures.accounts import personal_workspace
from tests.fixtures.ledger import Books

FREE_MONTHLY = 100_000_000
PRO_MONTHLY = 2_000_000_000
TEAM_MONTHLY = 10_000_000_000

ADMIT_AND_DIE = textwrap.dedent(
    """
    import asyncio, os, signal, sys, uuid
    from datetime import timedelta

    # Only what a worker needs for the meter (not every model: the ledger tables must carry their
    # own column types, or SQLite cannot bind a UUID).
    from lipika.billing.meter import build_meter
    from lipika.config import Settings
    from lipika.db import create_engine


    async def main() -> None:
        settings = Settings()
        meter = build_meter(settings, create_engine(settings))
        ticket = await meter.admit(
            uuid.UUID(sys.argv[1]), None, operation="chat.completion", price="demo",
            max_usage={"input_tokens": 100, "output_tokens": 200}, ttl=timedelta(seconds=float(sys.argv[2])),
        )
        print(ticket.hold_id, ticket.amount, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # dies between admit and settle
        print("still alive", flush=True)


    asyncio.run(main())
    """
)


async def test_a_killed_process_leaves_a_hold_that_reconciliation_releases(
    books: Books, run_process, lipika_cli, reconcile_paused
) -> None:
    workspace_id = await books.new_wallet("free")
    ttl = 1.0
    died = await run_process(sys.executable, "-c", ADMIT_AND_DIE, str(workspace_id), str(ttl))
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert "still alive" not in died.stdout
    hold_text, amount_text = died.stdout.split()
    hold_id, amount = uuid.UUID(hold_text), int(amount_text)
    assert amount == 100 * 100 + 200 * 500

    hold = await books.hold(hold_id)
    assert hold.status == HoldStatus.OPEN
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY, amount)
    await books.assert_balanced()  # an open hold is not drift

    await asyncio.sleep(max(0.0, (hold.expires_at - utcnow()).total_seconds()) + 0.05)
    reconciled = await run_process(str(LIPIKA), "reconcile", "--once")
    assert reconciled.returncode == 0, reconciled.stderr
    assert reconciled.stdout.strip() == "expired holds: 1, allowances: 0, pruned counters: 0"

    hold = await books.hold(hold_id)
    assert (hold.status, hold.captured, hold.outcome) == (
        HoldStatus.EXPIRED,
        0,
        Outcome.ABANDONED.value,
    )
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY, 0)
    assert await books.entries(workspace_id, EntryKind.USAGE) == []

    audited = await lipika_cli("ledger", "audit")
    assert audited.returncode == 0, audited.stderr
    checked, _ = await books.audit()
    assert audited.stdout.strip() == f"ok: {checked} wallets balance"


async def tamper(books: Books, workspace_id: uuid.UUID, delta: int) -> None:
    """Moves a wallet's cached balance behind the ledger's back, in plain SQL."""
    wallets = Wallet.__table__
    async with books.engine.begin() as conn:
        await conn.execute(
            update(wallets)
            .where(wallets.c.workspace_id == workspace_id)
            .values(balance=wallets.c.balance + delta)
        )


async def test_the_audit_exits_1_on_a_tampered_balance(books: Books, lipika_cli) -> None:
    workspace_id = await books.new_wallet("free")
    other = await books.new_wallet("pro")
    await tamper(books, workspace_id, +1)
    try:
        audited = await lipika_cli("ledger", "audit")
        assert audited.returncode == 1, audited.stdout + audited.stderr
        assert audited.stdout == ""
        assert audited.stderr.splitlines() == [
            f"DRIFT workspace={workspace_id} balance={FREE_MONTHLY + 1} ledger={FREE_MONTHLY} held=0 open_holds=0",
            "1 of 2 wallets drifted",
        ]
        checked, drift = await books.audit()
        assert checked == 2
        assert [(row.workspace_id, row.balance, row.ledger_balance) for row in drift] == [
            (workspace_id, FREE_MONTHLY + 1, FREE_MONTHLY)
        ]
    finally:
        await tamper(books, workspace_id, -1)
    await books.assert_balanced()
    repaired = await lipika_cli("ledger", "audit")
    assert (repaired.returncode, repaired.stdout.strip()) == (0, "ok: 2 wallets balance")
    assert (await books.state(other)).balance == PRO_MONTHLY


async def test_reconciliation_expires_only_overdue_holds(books: Books, reconcile_paused) -> None:
    run_once = reconcile_paused
    meter = books.meter
    workspace_id = await books.new_wallet("free")
    short = await meter.admit(
        workspace_id,
        uuid.uuid4(),
        operation="t",
        price="demo",
        max_usage={"output_tokens": 10},
        ttl=timedelta(seconds=60),
    )
    long = await meter.admit(
        workspace_id, uuid.uuid4(), operation="t", price="demo", max_usage={"output_tokens": 20}
    )
    settled = await meter.admit(
        workspace_id,
        None,
        operation="t",
        price="demo",
        max_usage={"output_tokens": 30},
        ttl=timedelta(seconds=60),
    )
    await meter.capture(settled.hold_id, {"output_tokens": 30})
    reconciler = Reconciler(meter, books.sessionmaker)

    report = await run_once(reconciler, now=short.expires_at - timedelta(seconds=1))
    assert report.expired_holds == 0
    report = await run_once(reconciler, now=short.expires_at + timedelta(seconds=1))
    assert report.expired_holds == 1
    assert (await books.hold(short.hold_id)).status == HoldStatus.EXPIRED
    assert (await books.hold(long.hold_id)).status == HoldStatus.OPEN
    assert (await books.hold(settled.hold_id)).status == HoldStatus.CAPTURED
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY - 15_000, 10_000)
    report = await run_once(reconciler, now=long.expires_at + timedelta(seconds=1))
    assert report.expired_holds == 1
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY - 15_000, 0)
    # expired holds no longer count against the members' daily requests or the daily credit cap
    counters = await books.counters(f"wsday:{workspace_id}:")
    assert list(counters.values()) == [15_000]
    requests = await books.counters(f"req:{workspace_id}:")
    assert sorted(requests.values()) == [0, 0]
    await books.assert_balanced()


async def test_monthly_allowances_are_granted_once_per_month(
    books: Books, reconcile_paused
) -> None:
    free = await books.new_wallet("free")
    pro = await books.new_wallet("pro")
    team = await books.new_wallet("team")
    reconciler = Reconciler(books.meter, books.sessionmaker)
    now = utcnow()
    assert await reconciler.grant_allowances(now) == 0  # opening a wallet granted this month's

    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=2)
    assert await reconciler.grant_allowances(next_month) == 3
    assert await reconciler.grant_allowances(next_month) == 0
    assert await reconciler.grant_allowances(next_month + timedelta(days=20)) == 0
    period = next_month.strftime("%Y-%m")
    for workspace_id, plan, monthly in (
        (free, "free", FREE_MONTHLY),
        (pro, "pro", PRO_MONTHLY),
        (team, "team", TEAM_MONTHLY),
    ):
        grants = await books.entries(workspace_id, EntryKind.GRANT)
        assert [g.amount for g in grants] == [monthly, monthly]
        assert grants[1].idempotency_key == f"allowance:{workspace_id}:{plan}:{period}"
        assert (await books.state(workspace_id)).balance == 2 * monthly
    await books.assert_balanced()


async def test_allowances_go_to_verified_people_and_to_plans_an_operator_chose(
    client, signup, books: Books, reconcile_paused
) -> None:
    """Issue 10, finding 3: a team workspace on the free plan, and the personal workspace of an
    unverified sign-up, get no monthly allowance; an operator's plan or a verified owner do."""
    person = await signup("person")
    team = await client.post("/v1/workspaces", json={"name": "Farm"}, headers=person.headers)
    team_id = uuid.UUID(team.json()["id"])
    chosen = await client.post("/v1/workspaces", json={"name": "Paid"}, headers=person.headers)
    chosen_id = uuid.UUID(chosen.json()["id"])
    await books.assign_plan(chosen_id, "free")  # `lipika plans assign`: the allowance is due
    await books.post(team_id, 1_000_000, kind=EntryKind.GRANT)  # a one-off grant is only that
    squatter = f"unverified-{uuid.uuid4().hex[:8]}@example.com"
    signed = await client.post(
        "/v1/auth/signup", json={"email": squatter, "password": "correct horse battery"}
    )
    assert signed.status_code == 202
    unverified_id = await personal_workspace(books, squatter)
    personal_id = uuid.UUID(person.personal_workspace_id)

    reconciler = Reconciler(books.meter, books.sessionmaker)
    now = utcnow()
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=2)
    assert await reconciler.grant_allowances(now) == 0
    assert await reconciler.grant_allowances(next_month) == 2
    assert await reconciler.grant_allowances(next_month) == 0
    balances = {
        "team": (await books.state(team_id)).balance,
        "chosen": (await books.state(chosen_id)).balance,
        "unverified": (await books.state(unverified_id)).balance,
        "personal": (await books.state(personal_id)).balance,
    }
    assert balances == {
        "team": 1_000_000,
        "chosen": 2 * FREE_MONTHLY,
        "unverified": 0,
        "personal": 2 * FREE_MONTHLY,
    }
    async with books.sessionmaker() as session:
        due = {
            row.workspace_id: row.allowance_due
            for row in (await session.execute(select(Wallet.workspace_id, Wallet.allowance_due)))
        }
    assert due == {team_id: False, chosen_id: True, unverified_id: False, personal_id: True}
    await books.assert_balanced()


async def test_old_limit_counters_are_pruned(books: Books, reconcile_paused) -> None:
    run_once = reconcile_paused
    workspace_id = await books.new_wallet("free")
    ticket = await books.meter.admit(
        workspace_id, uuid.uuid4(), operation="t", price="demo", max_usage={"output_tokens": 1}
    )
    await books.meter.release(ticket.hold_id, Outcome.INTERNAL_ERROR)
    reconciler = Reconciler(books.meter, books.sessionmaker)
    assert (await run_once(reconciler, now=utcnow() + timedelta(days=39))).pruned_counters == 0
    report = await run_once(reconciler, now=utcnow() + timedelta(days=41))
    assert report.pruned_counters == 2  # this member's requests to demo, the workspace's credits


async def test_the_reconcile_loop_stops_when_cancelled_with_the_embedded_redis() -> None:
    """The app's shutdown cancels the loop and waits for it. The in-process Redis stand-in takes
    its lock through asyncio.wait_for, which on Python 3.11 can swallow a cancellation."""
    redis = FakeAsyncRedis(decode_responses=True)
    taking_lock = asyncio.Event()
    real_lock = redis.lock

    def lock(*args, **kwargs):  # noqa: ANN002, ANN003
        taking_lock.set()
        return real_lock(*args, **kwargs)

    redis.lock = lock  # type: ignore[method-assign]

    class Idle:
        async def run_once(self) -> ReconcileReport:
            return ReconcileReport(0, 0, 0)

    loop = asyncio.create_task(reconcile_forever(Idle(), redis, interval=3600))  # type: ignore[arg-type]
    await taking_lock.wait()
    loop.cancel()  # what the app's lifespan does at shutdown
    done, _ = await asyncio.wait({loop}, timeout=1.0)
    if not done:  # still looping: cancel it again (it is asleep now, so this one lands)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    await redis.aclose()
    assert done == {loop}, "the reconcile loop survived its cancellation"
    assert loop.cancelled()


# -- the operator commands -------------------------------------------------------------------------


async def test_credits_grant_by_email(books: Books, signup, lipika_cli) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    result = await lipika_cli(
        "credits", "grant", "--email", account.email.upper(), "--amount", "2.5"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"grant 2.5 credits to workspace {workspace_id}; balance 102.5"
    assert (await books.state(workspace_id)).balance == FREE_MONTHLY + 2_500_000
    [_, grant] = await books.entries(workspace_id, EntryKind.GRANT)
    assert (grant.amount, grant.reason) == (2_500_000, "operator grant")
    assert re.fullmatch(r"cli:[0-9a-f-]{36}", grant.idempotency_key)


async def test_credits_grant_with_an_idempotency_key_is_repeat_safe(
    books: Books, signup, lipika_cli
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    args = (
        "credits",
        "grant",
        "--workspace",
        str(workspace_id),
        "--amount",
        "3",
        "--reason",
        "refund #12",
        "--idempotency-key",
        "refund-12",
    )
    first = await lipika_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"grant 3 credits to workspace {workspace_id}; balance 103"
    second = await lipika_cli(*args)
    assert second.returncode == 0, second.stderr
    assert (
        second.stdout.strip()
        == f"grant 3 credits to workspace {workspace_id}; balance 103 (already posted; nothing changed)"
    )
    assert (await books.state(workspace_id)).balance == FREE_MONTHLY + 3_000_000
    grants = await books.entries(workspace_id, EntryKind.GRANT)
    assert [(g.amount, g.reason, g.idempotency_key) for g in grants[1:]] == [
        (3_000_000, "refund #12", "cli:refund-12")
    ]


async def test_credits_adjust_never_goes_below_the_available_balance(
    books: Books, signup, lipika_cli
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    ticket = await books.meter.admit(
        workspace_id, None, operation="t", price="demo", max_usage={"output_tokens": 2_000}
    )
    assert ticket.amount == 1_000_000  # 99 credits available

    refused = await lipika_cli(
        "credits", "adjust", "--email", account.email, "--amount", "-99.5", "--reason", "chargeback"
    )
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.startswith(
        "error: insufficient_credits: this needs up to 99.5 credits; 99 are available"
    )
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY, 1_000_000)
    assert await books.entries(workspace_id, EntryKind.ADJUSTMENT) == []

    allowed = await lipika_cli(
        "credits", "adjust", "--email", account.email, "--amount", "-99", "--reason", "chargeback"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert (
        allowed.stdout.strip() == f"adjustment -99 credits to workspace {workspace_id}; balance 1"
    )
    assert await books.state(workspace_id) == WalletState(1_000_000, 1_000_000)
    await books.assert_balanced()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("credits", "grant", "--amount", "1"),
            "error: give exactly one of --email or --workspace",
        ),
        (
            ("credits", "grant", "--email", "nobody@example.com", "--amount", "1"),
            "error: not_found: no user with email 'nobody@example.com'",
        ),
        (
            ("credits", "grant", "--workspace", "not-a-uuid", "--amount", "1"),
            "error: not_found: 'not-a-uuid' is not a workspace id",
        ),
        (
            ("credits", "grant", "--workspace", str(uuid.UUID(int=1)), "--amount", "1"),
            f"error: not_found: no workspace {uuid.UUID(int=1)}",
        ),
        (
            ("credits", "grant", "--email", "a@example.com", "--amount", "0"),
            "error: --amount must be positive",
        ),
        (
            ("credits", "adjust", "--email", "a@example.com", "--amount", "0", "--reason", "x"),
            "error: --amount must not be zero",
        ),
        (
            ("reconcile",),
            "error: only --once is offered here; the server runs the periodic loop itself",
        ),
    ],
)
async def test_command_errors_exit_2(
    books: Books, lipika_cli, args: tuple[str, ...], message: str
) -> None:
    result = await lipika_cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == message


async def test_an_amount_finer_than_a_micro_credit_is_refused(
    books: Books, signup, lipika_cli
) -> None:
    account = await signup()
    result = await lipika_cli("credits", "grant", "--email", account.email, "--amount", "0.0000001")
    assert result.returncode == 2
    # (the message shows the Python repr of the amount: "Decimal('1E-7') credits is finer ...")
    assert result.stderr.startswith("error: ")
    assert result.stderr.strip().endswith("credits is finer than one micro-credit")
    assert (await books.state(uuid.UUID(account.personal_workspace_id))).balance == FREE_MONTHLY


async def test_plans_assign_switches_the_plan_and_grants_once(
    books: Books, signup, lipika_cli, client
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    for _ in range(2):
        result = await lipika_cli("plans", "assign", "--email", account.email, "--plan", "pro")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"workspace {workspace_id} is on the pro plan"
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert (balance["plan"], balance["balance"]) == ("pro", FREE_MONTHLY + PRO_MONTHLY)
    grants = await books.entries(workspace_id, EntryKind.GRANT)
    period = datetime.now(UTC).strftime("%Y-%m")
    assert [(g.amount, g.idempotency_key, g.reason) for g in grants] == [
        (FREE_MONTHLY, f"allowance:{workspace_id}:free:{period}", f"Free plan, {period}"),
        (PRO_MONTHLY, f"allowance:{workspace_id}:pro:{period}", f"Pro plan, {period}"),
    ]
    # back to free this month: its allowance was already granted
    back = await lipika_cli("plans", "assign", "--workspace", str(workspace_id), "--plan", "free")
    assert back.returncode == 0, back.stderr
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY + PRO_MONTHLY, 0)

    unknown = await lipika_cli("plans", "assign", "--email", account.email, "--plan", "enterprise")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: unknown_plan: no plan named 'enterprise'"
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert (balance["plan"], balance["balance"]) == ("free", FREE_MONTHLY + PRO_MONTHLY)
