"""Billing fixtures: ways to run the `lipika` command against the same settings, and a pause
for the app's own reconciliation. The ledger fixtures (`books`, `meter`) are in fixtures/ledger.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lipika.billing.tasks import Reconciler, ReconcileReport
from lipika.config import Settings

LIPIKA = Path(sys.executable).parent / "lipika"


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
