"""Settings: the URL forms operators write, and production's required secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lipika.config import Settings


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
