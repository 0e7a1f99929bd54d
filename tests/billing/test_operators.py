"""Who may mint credits over HTTP: a verified user that `lipika operators add` named, never an
address typed into the settings (issue 10, finding 1: operator by sign-up)."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from lipika.auth.models import Operator, User
from lipika.billing.models import EntryKind
from lipika.billing.repository import WalletState
from lipika.config import Settings
from lipika.db import utcnow
from tests.fixtures.accounts import personal_workspace, unverified_session
from tests.fixtures.ledger import Books
from tests.fixtures.mail import Mailbox

FREE_MONTHLY = 100_000_000
GRANT = {"amount": "1000000", "reason": "free money"}


async def test_signing_up_with_an_operators_address_gives_no_operator_rights(
    client: httpx.AsyncClient, signup, lipika_cli, books: Books, settings: Settings
) -> None:
    """The address of the operator-to-be is taken by a stranger before its owner signs up."""
    address = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    signed = await client.post(
        "/v1/auth/signup", json={"email": address, "password": "correct horse battery"}
    )
    assert signed.status_code == 202
    login = await client.post(
        "/v1/auth/login", json={"email": address, "password": "correct horse battery"}
    )
    assert login.status_code == 401
    # the command refuses to make an unverified address an operator
    refused = await lipika_cli("operators", "add", "--email", address)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: email_not_verified: {address} is not verified")

    # an unverified account with a login and an operator record is refused all the same
    stranger = await unverified_session(books, settings, address)
    async with books.sessionmaker.begin() as session:
        user = await session.scalar(select(User).where(User.email == address))
        session.add(Operator(user_id=user.id, added_at=utcnow(), note="planted"))
    for path in ("/v1/billing/grants", "/v1/billing/adjustments"):
        response = await client.post(path, json=GRANT, headers=stranger.headers)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "operator_only"
    workspace_id = uuid.UUID(stranger.personal_workspace_id)
    assert await books.state(workspace_id) == WalletState(0, 0)
    assert await books.entries(workspace_id) == []


async def test_a_verified_user_mints_only_once_named_by_the_command(
    client: httpx.AsyncClient, signup, lipika_cli, books: Books
) -> None:
    account = await signup("operator")
    refused = await client.post("/v1/billing/grants", json=GRANT, headers=account.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "operator_only"

    added = await lipika_cli("operators", "add", "--email", account.email.upper(), "--note", "on call")
    assert (added.returncode, added.stdout.strip()) == (0, f"{account.email.upper()} is an operator")
    again = await lipika_cli("operators", "add", "--email", account.email)
    assert again.stdout.strip() == f"{account.email} is an operator (already; nothing changed)"
    listed = await lipika_cli("operators", "list")
    [line] = listed.stdout.strip().splitlines()
    assert line.startswith(f"{account.email}\t") and line.endswith("\ton call")

    # An operator's API key does not mint: a leaked key must not create credits.
    key = (await client.post("/v1/api-keys", json={"name": "ops"}, headers=account.headers)).json()["key"]
    by_key = await client.post("/v1/billing/grants", json=GRANT, headers={"Authorization": f"Bearer {key}"})
    assert (by_key.status_code, by_key.json()["error"]["code"]) == (403, "user_token_required")

    granted = await client.post("/v1/billing/grants", json=GRANT, headers=account.headers)
    assert granted.status_code == 201, granted.text
    workspace_id = uuid.UUID(account.personal_workspace_id)
    assert (await books.state(workspace_id)).balance == FREE_MONTHLY + 10**12

    removed = await lipika_cli("operators", "remove", "--email", account.email)
    assert removed.stdout.strip() == f"{account.email} is no longer an operator"
    after = await client.post("/v1/billing/grants", json=GRANT, headers=account.headers)
    assert after.status_code == 403
    assert (await lipika_cli("operators", "list")).stdout == ""
    gone = await lipika_cli("operators", "remove", "--email", account.email)
    assert gone.stdout.strip() == f"{account.email} was not an operator"
    unknown = await lipika_cli("operators", "add", "--email", "nobody@example.com")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: not_found: no user with email 'nobody@example.com'"
    await books.assert_balanced()


async def test_support_verifies_an_address_by_hand_once(
    client: httpx.AsyncClient, mailbox: Mailbox, lipika_cli, books: Books
) -> None:
    address = f"support-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery"
    await client.post("/v1/auth/signup", json={"email": address, "password": password})
    workspace_id = await personal_workspace(books, address)

    first = await lipika_cli("users", "verify", "--email", address)
    assert (first.returncode, first.stdout.strip()) == (0, f"{address} is verified")
    second = await lipika_cli("users", "verify", "--email", address)
    assert second.stdout.strip() == f"{address} is verified (already; nothing changed)"
    grants = await books.entries(workspace_id, EntryKind.GRANT)
    assert [g.amount for g in grants] == [FREE_MONTHLY]
    # the mailed link died with the manual verification; the password now logs in
    link = await client.post("/v1/auth/verify-email", json={"token": await mailbox.token(address)})
    assert link.status_code == 400
    login = await client.post("/v1/auth/login", json={"email": address, "password": password})
    assert login.status_code == 200, login.text
    await books.assert_balanced()
