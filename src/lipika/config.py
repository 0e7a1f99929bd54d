"""One Settings object, read from `LIPIKA_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lipika.kit.urls import to_async_sqlalchemy_url, to_checkpoint_conninfo


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIPIKA_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".lipika")

    database_url: str | None = None
    checkpoint_database_url: str | None = None
    redis_url: str | None = None
    db_pool_size: int = Field(15, ge=1)
    checkpoint_pool_size: int = Field(6, ge=1)

    secret_key: SecretStr | None = None
    access_token_ttl_seconds: int = Field(15 * 60, ge=30)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    operator_emails: str = Field("", description="comma-separated emails of platform operators")
    pricebook_path: Path | None = None
    plans_path: Path | None = None
    hold_ttl_seconds: int = Field(15 * 60, ge=60)
    reconcile_interval_seconds: float = Field(30, gt=0)
    log_level: str = "INFO"
    log_json: bool = True

    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    xai_api_key: SecretStr | None = None
    xai_base_url: str | None = None
    provider_timeout_seconds: float = Field(600, gt=0)
    provider_max_retries: int = Field(2, ge=0, le=10)
    stream_budget_seconds: float = Field(600, gt=0)
    stream_heartbeat_seconds: float = Field(15, gt=0)
    agent_max_steps: int = Field(10, ge=1, le=100)
    # A thread's run holds it for this long unless its process renews it (every third of it):
    # how long a dead process keeps its threads busy.
    run_lease_seconds: float = Field(30, ge=3, le=600)
    checkpoints_kept_per_thread: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.env == "production" and self.secret_key is None:
            raise ValueError("LIPIKA_SECRET_KEY is required when LIPIKA_ENV=production")
        return self

    @property
    def app_db_url(self) -> str:
        """SQLAlchemy async URL of the app database (SQLite file in the data dir by default)."""
        return to_async_sqlalchemy_url(self.database_url or f"sqlite:///{self.data_dir / 'app.db'}")

    @property
    def checkpoint_db(self) -> str:
        """psycopg conninfo, or a SQLite file path, for the checkpoint database."""
        return to_checkpoint_conninfo(
            self.checkpoint_database_url or f"sqlite:///{self.data_dir / 'checkpoints.db'}"
        )

    @property
    def operators(self) -> frozenset[str]:
        return frozenset(e.strip().lower() for e in self.operator_emails.split(",") if e.strip())

    @property
    def embedded(self) -> bool:
        """True when the app database is SQLite: migrations are then applied at start."""
        return self.app_db_url.startswith("sqlite")

    @cached_property
    def signing_key(self) -> str:
        """The JWT signing secret: configured, or generated once and kept in the data dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()
