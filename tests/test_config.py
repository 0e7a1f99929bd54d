"""Settings: the URL forms operators write, and production's required secret."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from lipika.cli import main as cli_main
from lipika.config import Settings
from tests.test_deploy import DEPLOY

PRODUCTION_STORES = {
    "database_url": "postgresql://u@db/app",
    "checkpoint_database_url": "postgresql://u@db/checkpoints",
    "redis_url": "redis://redis:6379/0",
}


def test_production_refuses_to_start_without_a_secret() -> None:
    with pytest.raises(ValidationError, match="LIPIKA_SECRET_KEY"):
        Settings(env="production", **PRODUCTION_STORES, _env_file=None)
    production = Settings(env="production", secret_key="s" * 40, **PRODUCTION_STORES, _env_file=None)
    assert production.signing_key == "s" * 40


@pytest.mark.parametrize("secret", ["change-me-to-64-random-characters" + "x" * 40, "short-secret"])
def test_production_refuses_a_placeholder_or_short_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="LIPIKA_SECRET_KEY is the example's placeholder"):
        Settings(env="production", secret_key=secret, **PRODUCTION_STORES, _env_file=None)


@pytest.mark.parametrize("unset", sorted(PRODUCTION_STORES))
def test_production_refuses_embedded_storage(unset: str) -> None:
    stores = {**PRODUCTION_STORES, unset: None}
    with pytest.raises(ValidationError, match=f"needs LIPIKA_{unset.upper()} ") as refused:
        Settings(env="production", secret_key="s" * 40, **stores, _env_file=None)
    assert "LIPIKA_ALLOW_EMBEDDED_IN_PRODUCTION" in str(refused.value)
    assert Settings(
        env="production", secret_key="s" * 40, allow_embedded_in_production=True, **stores, _env_file=None
    ).env == "production"


def test_production_refuses_a_sqlite_database() -> None:
    stores = {**PRODUCTION_STORES, "database_url": "sqlite:////var/lib/app.db"}
    with pytest.raises(ValidationError, match="needs LIPIKA_DATABASE_URL "):
        Settings(env="production", secret_key="s" * 40, **stores, _env_file=None)


def test_local_storage_folders_are_created(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        secret_key="s" * 40,
        checkpoint_database_url=f"sqlite:///{tmp_path / 'elsewhere' / 'ckpt.db'}",
        _env_file=None,
    )
    settings.prepare_local_storage()
    assert (tmp_path / "data").is_dir() and (tmp_path / "elsewhere").is_dir()


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


@pytest.mark.parametrize(
    ("changes", "other"),
    [
        ({"hold_ttl_seconds": 600}, "LIPIKA_STREAM_BUDGET_SECONDS"),
        ({"hold_ttl_seconds": 120, "stream_budget_seconds": 61}, "LIPIKA_STREAM_BUDGET_SECONDS"),
        ({"hold_ttl_seconds": 900, "provider_timeout_seconds": 880}, "LIPIKA_PROVIDER_TIMEOUT_SECONDS"),
    ],
)
def test_a_hold_ttl_that_does_not_outlive_what_holds_it_is_refused(changes: dict, other: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**changes, _env_file=None)
    [error] = refused.value.errors()
    assert "LIPIKA_HOLD_TTL_SECONDS" in error["msg"] and other in error["msg"]


def test_the_hold_ttl_may_outlive_the_stream_budget_by_the_margin() -> None:
    assert Settings(hold_ttl_seconds=120, stream_budget_seconds=60, provider_timeout_seconds=60, _env_file=None)


def test_the_cli_names_a_contradiction_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    monkeypatch.setenv("LIPIKA_HOLD_TTL_SECONDS", "300")
    capfd.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli_main(["serve"])  # the console script
    assert exited.value.code == 2
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: LIPIKA_HOLD_TTL_SECONDS (300)")
    assert "LIPIKA_STREAM_BUDGET_SECONDS (600)" in lines[0]
    assert "Traceback" not in out + err


def test_the_shipped_and_deployed_settings_hold_together() -> None:
    configmap = yaml.safe_load((DEPLOY / "k8s" / "base" / "configmap.yaml").read_text())
    env = {k.removeprefix("LIPIKA_").lower(): v for k, v in configmap["data"].items()}
    Settings(**{**env, "secret_key": "s" * 40, "allow_embedded_in_production": True}, _env_file=None)


def test_an_idempotency_lock_must_outlive_a_provider_call() -> None:
    with pytest.raises(ValueError, match="LIPIKA_IDEMPOTENCY_LOCK_SECONDS"):
        Settings(idempotency_lock_seconds=600, provider_timeout_seconds=600, _env_file=None)
    assert Settings(idempotency_lock_seconds=120, hold_ttl_seconds=120, provider_timeout_seconds=60, stream_budget_seconds=60, _env_file=None)
