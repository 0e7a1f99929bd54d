"""Start-up and operator commands: they create the folders they need, or stop with one line
that names the setting to fix (exit code 2), never a traceback."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager

from lipika import cli
from lipika.app import create_app
from lipika.config import Settings

SECRET = "s" * 48


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]):
    """`lipika ARGS` through the console script's `main`, in a folder of its own, with only
    the given LIPIKA_* variables set. Returns (exit code, stdout, stderr)."""
    # The command configures logging to its own stdout; in this process that would replace
    # the suite's logging.
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("LIPIKA_")]:
        monkeypatch.delenv(name)

    async def run(*args: str, **env: str) -> tuple[int, str, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capfd.readouterr()
        try:
            await asyncio.to_thread(cli.main, list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capfd.readouterr()
        return code, out, err

    return run


async def test_a_command_in_a_fresh_folder_creates_its_data_folder(run_main, tmp_path: Path) -> None:
    code, out, err = await run_main("ledger", "audit", LIPIKA_SECRET_KEY=SECRET)
    assert (code, out.strip()) == (0, "ok: 0 wallets balance"), err
    assert (tmp_path / ".lipika" / "app.db").is_file()


async def test_an_unreachable_database_is_one_line_naming_its_setting(run_main) -> None:
    code, _, err = await run_main(
        "ledger", "audit", LIPIKA_DATABASE_URL="postgresql://lipika:hunter2@127.0.0.1:1/lipika"
    )
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: cannot reach the app database (LIPIKA_DATABASE_URL=")
    assert "hunter2" not in err


async def test_production_without_its_stores_is_one_line(run_main) -> None:
    code, _, err = await run_main("migrate", LIPIKA_ENV="production", LIPIKA_SECRET_KEY=SECRET)
    assert code == 2 and err.count("\n") == 1
    assert "LIPIKA_DATABASE_URL" in err and "LIPIKA_ALLOW_EMBEDDED_IN_PRODUCTION" in err


async def test_a_malformed_setting_is_one_line(run_main) -> None:
    code, _, err = await run_main("ledger", "audit", LIPIKA_DB_POOL_SIZE="many")
    assert code == 2
    assert err.startswith("error: LIPIKA_DB_POOL_SIZE: ") and err.count("\n") == 1


async def test_serve_with_a_bad_price_book_stops_before_listening(run_main, tmp_path: Path) -> None:
    broken = tmp_path / "prices.toml"
    broken.write_text("version = ")
    code, _, err = await run_main(
        "serve", "--port", "1", LIPIKA_SECRET_KEY=SECRET, LIPIKA_PRICEBOOK_PATH=str(broken)
    )
    assert code == 2 and err.startswith("error: LIPIKA_PRICEBOOK_PATH: cannot read price book")


async def test_the_server_starts_with_a_secret_and_no_data_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new", secret_key=SECRET, _env_file=None)
    async with LifespanManager(create_app(settings)):
        assert (tmp_path / "new" / "app.db").is_file()
