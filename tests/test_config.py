"""Settings: the URL forms operators write, and production's required secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lipika.config import Settings


def test_production_refuses_to_start_without_a_secret() -> None:
    with pytest.raises(ValidationError, match="LIPIKA_SECRET_KEY"):
        Settings(env="production", _env_file=None)
    assert Settings(env="production", secret_key="s" * 40, _env_file=None).signing_key == "s" * 40


def test_operator_emails_refuse_to_start_naming_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Operators are recorded in the database now; an address in the settings would be a silent
    no-op, so a configuration that still sets one does not start."""
    monkeypatch.setenv("LIPIKA_OPERATOR_EMAILS", "ops@example.com")
    with pytest.raises(ValidationError, match="lipika operators add"):
        Settings(_env_file=None)
    monkeypatch.setenv("LIPIKA_OPERATOR_EMAILS", "")  # named nobody: nothing to refuse
    Settings(_env_file=None)


def test_the_cli_says_why_in_one_line(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "LIPIKA_OPERATOR_EMAILS": "ops@example.com", "LIPIKA_DATA_DIR": str(tmp_path)}
    run = subprocess.run(
        [str(Path(sys.executable).parent / "lipika"), "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("error: LIPIKA_OPERATOR_EMAILS is no longer read") and "lipika operators add" in line


def test_smtp_tls_and_starttls_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="exclude each other"):
        Settings(smtp_tls=True, smtp_starttls=True, _env_file=None)
    assert Settings(smtp_tls=True, _env_file=None).smtp_uses_starttls is False
    assert Settings(_env_file=None).smtp_uses_starttls is True
    assert Settings(smtp_starttls=False, _env_file=None).smtp_uses_starttls is False


@pytest.mark.parametrize(
    ("written", "app_url", "checkpoint"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app", "postgresql://u:p@db:5432/app"),
        ("postgres://u@db/app", "postgresql+asyncpg://u@db/app", "postgresql://u@db/app"),
        ("sqlite:////var/lib/app.db", "sqlite+aiosqlite:////var/lib/app.db", "sqlite:////var/lib/app.db"),
    ],
)
def test_plain_urls_get_the_right_driver(written: str, app_url: str, checkpoint: str) -> None:
    settings = Settings(database_url=written, checkpoint_database_url=written, _env_file=None)
    assert settings.app_db_url == app_url
    assert settings.checkpoint_db == checkpoint


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        _ = Settings(database_url="mysql://db/app", _env_file=None).app_db_url


def test_the_generated_secret_survives_a_restart(tmp_path) -> None:
    first = Settings(data_dir=tmp_path, _env_file=None).signing_key
    assert len(first) >= 40
    assert Settings(data_dir=tmp_path, _env_file=None).signing_key == first
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0
