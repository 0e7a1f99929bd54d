"""Billing fixtures: the tests' own meter and sessions on the app database, wallets made
without a signup (no argon2), and ways to run the `lipika` command against the same settings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lipika.billing.meter import Meter, build_meter
from lipika.billing.models import EntryKind, Hold, LedgerEntry, UsageCounter
from lipika.billing.repository import LedgerRepository, WalletState
from lipika.billing.service import BillingService, Posted
from lipika.billing.tasks import Reconciler, ReconcileReport
from lipika.config import Settings
from lipika.db import create_sessionmaker
from lipika.workspaces.models import Workspace, WorkspaceKind

LIPIKA = Path(sys.executable).parent / "lipika"
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Billing tests marked `postgres` do not run on the SQLite backend. Skipped here, at
    collection, rather than in a fixture: a fixture would first start the SQLite app only for
    it to be shut down at once."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            HERE in item.path.resolve().parents
            and item.get_closest_marker("postgres")
            and callspec is not None
            and callspec.params.get("backend") == "sqlite"
        ):
            item.add_marker(pytest.mark.skip(reason="PostgreSQL only"))


# -- database access ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sessionmaker(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(db_engine)


@pytest.fixture(scope="session")
async def meter(settings: Settings, db_engine: AsyncEngine) -> AsyncIterator[Meter]:
    meter = build_meter(settings, db_engine)
    yield meter
    await meter.aclose()  # calls in flight finish before the engine is disposed


@dataclass(repr=False)
class Books:
    """Reads and writes the ledger the way the app does, for assertions and set-up."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    meter: Meter

    def __repr__(self) -> str:  # shown in Hypothesis' falsifying examples
        return f"Books({self.engine.dialect.name})"

    async def new_wallet(self, plan: str = "free", name: str = "Billing test") -> uuid.UUID:
        """A team workspace row and its wallet (with the plan's monthly allowance), no users."""
        async with self.sessionmaker.begin() as session:
            workspace = Workspace(name=name, kind=WorkspaceKind.TEAM)
            session.add(workspace)
            await session.flush()
            await BillingService(session, self.meter.plans).open_wallet(workspace.id, plan)
            return workspace.id

    async def post(
        self,
        workspace_id: uuid.UUID,
        amount: int,
        *,
        kind: EntryKind = EntryKind.ADJUSTMENT,
        key: str | None = None,
    ) -> Posted:
        async with self.sessionmaker.begin() as session:
            return await BillingService(session, self.meter.plans).post(
                workspace_id, kind, amount, key or f"test:{uuid.uuid4()}", reason="test"
            )

    async def assign_plan(self, workspace_id: uuid.UUID, plan: str) -> None:
        async with self.sessionmaker.begin() as session:
            await BillingService(session, self.meter.plans).assign_plan(workspace_id, plan)

    async def set_available(self, workspace_id: uuid.UUID, available: int) -> WalletState:
        """Adjusts the balance so that exactly `available` micro-credits are available."""
        state = await self.state(workspace_id)
        if state.available != available:
            await self.post(workspace_id, available - state.available)
        state = await self.state(workspace_id)
        assert state.available == available
        return state

    async def state(self, workspace_id: uuid.UUID) -> WalletState:
        async with self.engine.connect() as conn:
            state = await LedgerRepository(conn).wallet_state(workspace_id)
        assert state is not None
        return state

    async def hold(self, hold_id: uuid.UUID) -> Hold:
        async with self.engine.connect() as conn:
            hold = await LedgerRepository(conn).hold(hold_id)
        assert hold is not None
        return hold

    async def holds(self, workspace_id: uuid.UUID) -> list[Hold]:
        table = Hold.__table__
        query = (
            select(table).where(table.c.workspace_id == workspace_id).order_by(table.c.created_at)
        )
        async with self.engine.connect() as conn:
            return [Hold(**row._mapping) for row in (await conn.execute(query)).all()]

    async def entries(
        self, workspace_id: uuid.UUID, kind: EntryKind | None = None
    ) -> list[LedgerEntry]:
        table = LedgerEntry.__table__
        query = select(table).where(table.c.workspace_id == workspace_id).order_by(table.c.id)
        if kind is not None:
            query = query.where(table.c.kind == kind)
        async with self.engine.connect() as conn:
            return [LedgerEntry(**row._mapping) for row in (await conn.execute(query)).all()]

    async def counters(self, prefix: str) -> dict[str, int]:
        table = UsageCounter.__table__
        query = select(table.c.key, table.c.value).where(
            table.c.key.startswith(prefix, autoescape=True)
        )
        async with self.engine.connect() as conn:
            return {row.key: row.value for row in (await conn.execute(query)).all()}

    async def audit(self) -> tuple[int, list]:
        async with self.sessionmaker() as session:
            checked, drift = await BillingService(session, self.meter.plans).audit()
            return checked, list(drift)

    async def assert_balanced(self) -> None:
        checked, drift = await self.audit()
        assert checked > 0
        assert drift == [], [tuple(row) for row in drift]


@pytest.fixture
async def books(
    client: httpx.AsyncClient,
    db_engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    meter: Meter,
) -> AsyncIterator[Books]:
    """Depends on `client` so that the tables are emptied after the test."""
    yield Books(db_engine, sessionmaker, meter)


@pytest.fixture
def reconcile_paused(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[ReconcileReport]]:
    """Stops the app's own periodic reconciliation pass from racing the test; returns the real
    `Reconciler.run_once` for the test to call itself."""
    original = Reconciler.run_once

    async def paused(self: Reconciler, now=None) -> ReconcileReport:  # noqa: ANN001
        return ReconcileReport(0, 0, 0)

    monkeypatch.setattr(Reconciler, "run_once", paused)
    return original


# -- the `lipika` command ------------------------------------------------------------------------


def cli_env(settings: Settings, pycache: Path | None = None) -> dict[str, str]:
    """Environment for a `lipika` process that uses the same databases as `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIPIKA_")}
    env["LIPIKA_DATA_DIR"] = str(settings.data_dir)
    env["LIPIKA_LOG_JSON"] = "false"
    env["LIPIKA_LOG_LEVEL"] = "WARNING"
    for name in ("database_url", "checkpoint_database_url", "redis_url"):
        value = getattr(settings, name)
        if value:
            env[f"LIPIKA_{name.upper()}"] = value
    if pycache is not None and env.pop("PYTHONDONTWRITEBYTECODE", None):
        # This sandbox writes no bytecode; a private cache makes every process after the first
        # start in a fraction of the time, without writing next to the sources.
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


WARM_UP = "import lipika.cli, lipika.billing.commands, lipika.models, typer.testing"


@pytest.fixture(scope="session", autouse=True)
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A bytecode cache for the `lipika` processes the tests start, filled in the background
    while the first tests run (this sandbox sets PYTHONDONTWRITEBYTECODE, so without it every
    process compiles the whole app again: seconds each)."""
    path = tmp_path_factory.mktemp("pycache")
    warm_up = None
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(path)
        warm_up = subprocess.Popen(
            [sys.executable, "-c", WARM_UP],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    _warm_ups.append(warm_up)
    yield path
    if warm_up is not None and warm_up.poll() is None:
        warm_up.kill()
        warm_up.wait()


_warm_ups: list[subprocess.Popen | None] = []


async def warmed_up() -> None:
    for warm_up in _warm_ups:
        if warm_up is not None:
            await asyncio.to_thread(warm_up.wait)


@pytest.fixture
def run_process(settings: Settings, pycache: Path, tmp_path: Path):
    """Runs a real process (the console script, or python -c) with the test's settings, from a
    directory without a `.env`, without blocking the event loop."""

    async def run(*argv: str, timeout: float = 120) -> Completed:
        await warmed_up()
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=cli_env(settings, pycache),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        return Completed(process.returncode, stdout.decode(), stderr.decode())

    return run


@pytest.fixture
def lipika_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The `lipika` typer app run in this process (in a worker thread: it calls asyncio.run),
    with the test's settings in its environment. Much cheaper than a process per call."""
    from typer.testing import CliRunner

    from lipika import cli

    # The command configures logging to its own stdout; here that would be the runner's buffer.
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("LIPIKA_")]:
        monkeypatch.delenv(name)
    env = {k: v for k, v in cli_env(settings).items() if k.startswith("LIPIKA_")}

    async def run(*args: str) -> Completed:
        runner = CliRunner()
        result = await asyncio.to_thread(runner.invoke, cli.cli, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Completed(result.exit_code, result.stdout, result.stderr)

    return run
