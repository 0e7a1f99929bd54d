"""The `lipika` command: serve, migrate, and the operator commands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
import uvicorn

from lipika import migrate as migrations
from lipika import preflight
from lipika.config import Settings
from lipika.errors import LipikaError
from lipika.kit.money import format_credits, to_micro
from lipika.logs import configure_logging

T = TypeVar("T")

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Lipika backend.",
)
credits_cli = typer.Typer(no_args_is_help=True, help="Grant or adjust a workspace's credits.")
plans_cli = typer.Typer(no_args_is_help=True, help="Put workspaces on plans.")
ledger_cli = typer.Typer(no_args_is_help=True, help="Inspect the ledger.")
checkpoints_cli = typer.Typer(no_args_is_help=True, help="Keep the checkpoint database bounded.")
operators_cli = typer.Typer(
    no_args_is_help=True, help="Name the platform operators (who may mint credits over HTTP)."
)
users_cli = typer.Typer(no_args_is_help=True, help="Support actions on accounts.")
payments_cli = typer.Typer(no_args_is_help=True, help="Refund or approve paid orders.")
cli.add_typer(credits_cli, name="credits")
cli.add_typer(plans_cli, name="plans")
cli.add_typer(ledger_cli, name="ledger")
cli.add_typer(checkpoints_cli, name="checkpoints")
cli.add_typer(operators_cli, name="operators")
cli.add_typer(users_cli, name="users")
cli.add_typer(payments_cli, name="payments")

EmailOpt = typer.Option(None, "--email", help="The user whose personal workspace is meant.")
WorkspaceOpt = typer.Option(None, "--workspace", help="A workspace id.")


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        help="Proxies (addresses or networks, comma-separated, or *) whose X-Forwarded-For "
        "names the client: the address the abuse limits count. Default: the "
        "FORWARDED_ALLOW_IPS environment variable, else 127.0.0.1.",
    ),
) -> None:
    """Start the API server (one Uvicorn worker; scale with more processes or pods)."""
    from lipika.app import create_app
    from lipika.kit.backpressure import BoundedHTTP

    settings = _settings()
    preflight.check_catalogues(settings)
    asyncio.run(preflight.check_stores(settings, checkpoint=True, redis=True))
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        workers=1,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        http=BoundedHTTP,
    )


@cli.command()
def migrate(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply database migrations to the app database (production runs this as its own step)."""
    settings = _settings()
    asyncio.run(preflight.check_stores(settings))
    migrations.upgrade(settings.app_db_url, revision)
    typer.echo(f"app database migrated to {revision}")


@credits_cli.command("grant")
def credits_grant(
    amount: str = typer.Option(..., "--amount", help="Credits to add (not micro-credits)."),
    reason: str = typer.Option("operator grant", "--reason"),
    email: str | None = EmailOpt,
    workspace: str | None = WorkspaceOpt,
    idempotency_key: str | None = typer.Option(None, "--idempotency-key", help="Repeat-safe key."),
) -> None:
    """Add credits to a workspace."""
    micro = _amount(amount)
    if micro <= 0:
        _fail("--amount must be positive")
    _post("grant", micro, reason, email, workspace, idempotency_key)


@credits_cli.command("adjust")
def credits_adjust(
    amount: str = typer.Option(..., "--amount", help="Signed credits, e.g. -2.5."),
    reason: str = typer.Option(..., "--reason", help="Why (kept on the ledger entry)."),
    email: str | None = EmailOpt,
    workspace: str | None = WorkspaceOpt,
    idempotency_key: str | None = typer.Option(None, "--idempotency-key", help="Repeat-safe key."),
) -> None:
    """Correct a balance; a negative adjustment cannot take the available balance below zero."""
    micro = _amount(amount)
    if micro == 0:
        _fail("--amount must not be zero")
    _post("adjustment", micro, reason, email, workspace, idempotency_key)


@plans_cli.command("assign")
def plans_assign(
    plan: str = typer.Option(..., "--plan"),
    email: str | None = EmailOpt,
    workspace: str | None = WorkspaceOpt,
) -> None:
    """Put a workspace on a plan (and grant that plan's monthly credits once this month)."""
    _need_target(email, workspace)
    workspace_id = _run(lambda op: op.assign_plan(plan, email=email, workspace=workspace))
    typer.echo(f"workspace {workspace_id} is on the {plan} plan")


@ledger_cli.command("audit")
def ledger_audit() -> None:
    """Prove balance == SUM(entries) and held == SUM(open holds) for every wallet; exit 1 on drift."""
    checked, drift = _run(lambda op: op.audit())
    for row in drift:
        typer.echo(
            f"DRIFT workspace={row.workspace_id} balance={row.balance} ledger={int(row.ledger_balance)} "
            f"held={row.held} open_holds={int(row.open_holds)}",
            err=True,
        )
    if drift:
        typer.echo(f"{len(drift)} of {checked} wallets drifted", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {checked} wallets balance")


@cli.command()
def reconcile(once: bool = typer.Option(False, "--once", help="One pass, then exit.")) -> None:
    """Release expired holds, grant monthly allowances, prune old counters."""
    if not once:
        _fail("only --once is offered here; the server runs the periodic loop itself")
    report = _run(lambda op: op.reconcile())
    typer.echo(
        f"expired holds: {report.expired_holds}, allowances: {report.allowances}, "
        f"pruned counters: {report.pruned_counters}"
    )


@checkpoints_cli.command("prune")
def checkpoints_prune(
    keep: int | None = typer.Option(
        None, "--keep", min=1, help="Checkpoints kept per thread (default: the setting)."
    ),
) -> None:
    """Keep each thread's latest checkpoints; delete those of threads that no longer exist."""
    from lipika.threads.commands import prune_checkpoints

    settings = _settings()
    asyncio.run(preflight.check_stores(settings, checkpoint=True))
    outcome = asyncio.run(prune_checkpoints(settings, keep))
    typer.echo(
        f"threads: {outcome.threads}, checkpoints deleted: {outcome.checkpoints_deleted}, "
        f"deleted threads cleared: {outcome.orphans_deleted}"
    )


@operators_cli.command("add")
def operators_add(
    email: str = typer.Option(..., "--email", help="A verified user's address."),
    note: str = typer.Option("", "--note", help="Why (kept with the record)."),
) -> None:
    """Make a verified user a platform operator."""
    added = _run_identity(lambda ids: ids.add_operator(email, note))
    typer.echo(f"{email} is an operator" + ("" if added else " (already; nothing changed)"))


@operators_cli.command("remove")
def operators_remove(email: str = typer.Option(..., "--email")) -> None:
    """Take away a user's operator rights."""
    removed = _run_identity(lambda ids: ids.remove_operator(email))
    typer.echo(f"{email} is no longer an operator" if removed else f"{email} was not an operator")


@operators_cli.command("list")
def operators_list() -> None:
    """The platform operators, oldest first."""
    for row in _run_identity(lambda ids: ids.operators()):
        typer.echo("\t".join((row.email, row.added_at, row.note)).rstrip())


@users_cli.command("verify")
def users_verify(email: str = typer.Option(..., "--email")) -> None:
    """Mark an address verified by hand (after support checked it); grants what a verification
    link would (the free plan's credits, the first time)."""
    first = _run_identity(lambda ids: ids.verify(email))
    typer.echo(f"{email} is verified" + ("" if first else " (already; nothing changed)"))


@payments_cli.command("refund")
def payments_refund(
    order: str = typer.Option(..., "--order", help="The order's id or tran_id."),
    reason: str = typer.Option(..., "--reason", help="Sent to the gateway as the remarks."),
) -> None:
    """Refund an order through the gateway and take back its credits (what is left of them)."""
    done = _run_payments(lambda p, o: p.refund(o.id, reason), order)
    typer.echo(f"order {done.tran_id} refunded (gateway status: {done.refund_status})")


@payments_cli.command("approve")
def payments_approve(
    order: str = typer.Option(..., "--order", help="The order's id or tran_id."),
) -> None:
    """Deliver a payment held for its risk level (after checking it with the gateway)."""
    done = _run_payments(lambda p, o: p.approve(o.id), order)
    typer.echo(f"order {done.tran_id} approved and delivered")


def _run_payments(action: Callable[[Any, Any], Awaitable[T]], order: str) -> T:
    from lipika.payments.commands import connect, find_order

    settings = _settings()

    async def main() -> T:
        await preflight.check_stores(settings)
        async with connect(settings) as payments:
            return await action(payments, await find_order(payments, order))

    try:
        return asyncio.run(main())
    except LipikaError as exc:
        _fail(f"{exc.code}: {exc.message}")


def _post(
    kind: str, micro: int, reason: str, email: str | None, workspace: str | None, key: str | None
) -> None:
    from lipika.billing.models import EntryKind

    _need_target(email, workspace)
    posted = _run(
        lambda op: op.post(
            EntryKind(kind), micro, reason, email=email, workspace=workspace, key=key
        )
    )
    entry = posted.entry
    note = " (already posted; nothing changed)" if posted.duplicate else ""
    typer.echo(
        f"{entry.kind} {format_credits(entry.amount)} credits to workspace {entry.workspace_id}; "
        f"balance {format_credits(entry.balance_after)}{note}"
    )


def _run(action: Callable[[Any], Awaitable[T]]) -> T:
    from lipika.billing.commands import Operator

    settings = _settings()

    async def main() -> T:
        await preflight.check_stores(settings)
        async with Operator.connect(settings) as operator:
            return await action(operator)

    try:
        return asyncio.run(main())
    except LipikaError as exc:
        _fail(f"{exc.code}: {exc.message}")


def _run_identity(action: Callable[[Any], Awaitable[T]]) -> T:
    from lipika.auth.commands import IdentityCommands

    async def main() -> T:
        async with IdentityCommands.connect(_settings()) as commands:
            return await action(commands)

    try:
        return asyncio.run(main())
    except LipikaError as exc:
        _fail(f"{exc.code}: {exc.message}")


def _settings() -> Settings:
    """The settings, with the folders of the embedded storage in place."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    settings.prepare_local_storage()
    return settings


def _amount(amount: str) -> int:
    """Exact credits as typed (a decimal string), never through a float."""
    try:
        return to_micro(amount)
    except ValueError as exc:
        _fail(str(exc))


def _need_target(email: str | None, workspace: str | None) -> None:
    if bool(email) == bool(workspace):
        _fail("give exactly one of --email or --workspace")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def main(args: list[str] | None = None) -> None:
    """The console script: a failure fixed by a setting is one line on stderr and exit code 2."""
    try:
        cli(args)
    except Exception as exc:
        line = preflight.explain(exc)
        if line is None:
            raise
        typer.echo(f"error: {line}", err=True)
        raise SystemExit(2) from None
