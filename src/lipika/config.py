"""One Settings object, read from `LIPIKA_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from limits import parse_many
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lipika.kit.urls import sqlite_path, to_async_sqlalchemy_url, to_checkpoint_conninfo

# The placeholder of deploy/k8s/secret.example.yaml, and anything shorter than this, is refused
# as a production signing secret.
EXAMPLE_SECRET_PREFIX = "change-me"
MIN_PRODUCTION_SECRET_CHARS = 32


class ConfigurationError(Exception):
    """A setting that cannot work as given: one line that names the setting to fix."""


# Development default for CORS: a front end served from any local port.
LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"


# A hold must outlive the longest thing that holds it (a stream, one provider call) by this much,
# or reconciliation may release it while its answer is still being delivered.
HOLD_TTL_MARGIN_SECONDS = 60

_LIMITS_SYNTAX = "limits such as '5/minute;20/hour' (count/unit, ';' between windows)"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIPIKA_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".lipika")

    database_url: str | None = None
    checkpoint_database_url: str | None = None
    redis_url: str | None = None
    redis_key_prefix: str = Field("lipika", min_length=1, max_length=100, pattern=r"^[\w.:-]+$")
    db_pool_size: int = Field(15, ge=1)
    checkpoint_pool_size: int = Field(6, ge=1)

    secret_key: SecretStr | None = None
    access_token_ttl_seconds: int = Field(15 * 60, ge=30)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)
    refresh_grace_seconds: float = Field(10, ge=0, le=60)
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # No longer read: operators are recorded in the database. Kept only to refuse a value.
    operator_emails: str | None = Field(None, exclude=True)
    pricebook_path: Path | None = None
    plans_path: Path | None = None
    hold_ttl_seconds: int = Field(15 * 60, ge=60)
    reconcile_interval_seconds: float = Field(30, gt=0)
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=60)
    # A request holding its key in flight for longer than this is taken to have died.
    idempotency_lock_seconds: int = Field(15 * 60, ge=1)
    cors_origins: str = Field(
        "",
        description="comma-separated browser origins allowed to call the API; empty: none in "
        "production, any localhost port in development",
    )
    login_failure_limits_per_account: str = "5/minute;20/hour;100/day"
    login_failure_limits_per_address: str = "30/minute;200/hour;1000/day"
    signup_limits_per_address: str = "10/hour;50/day"
    password_reset_limits_per_address: str = "10/hour;50/day"
    password_reset_limits_per_email: str = "3/hour;10/day"
    verification_email_limits_per_address: str = "10/hour;50/day"
    verification_email_limits_per_email: str = "3/hour;10/day"
    password_hash_queue: int = Field(16, ge=1, le=10_000)
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
    deepgram_api_key: SecretStr | None = None
    deepgram_base_url: str | None = None
    valyu_api_key: SecretStr | None = None
    valyu_base_url: str | None = None
    provider_timeout_seconds: float = Field(600, gt=0)
    provider_max_retries: int = Field(2, ge=0, le=10)
    stream_budget_seconds: float = Field(600, gt=0)
    stream_heartbeat_seconds: float = Field(15, gt=0)
    agent_max_steps: int = Field(10, ge=1, le=100)
    # A thread's run holds it for this long unless its process renews it (every third of it):
    # how long a dead process keeps its threads busy.
    run_lease_seconds: float = Field(30, ge=3, le=600)
    checkpoints_kept_per_thread: int = Field(10, ge=1)

    public_app_url: str = "http://localhost:3000"
    email_verification_ttl_seconds: int = Field(24 * 3600, ge=60)
    password_reset_ttl_seconds: int = Field(3600, ge=60)
    mail_from: str = "Lipika <no-reply@localhost>"
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: bool = False  # TLS from the first byte (usually port 465)
    smtp_starttls: bool | None = None  # upgrade after connecting (587); default: on unless TLS
    smtp_timeout_seconds: float = Field(30, gt=0)

    # Jobs (jobs/): a job's lease is renewed every third of it; a dead pod's jobs are adopted
    # within a lease and a reconcile period.
    job_lease_seconds: float = Field(30, ge=1, le=600)
    job_poll_seconds: float = Field(5, gt=0, le=300)
    video_job_deadline_seconds: float = Field(30 * 60, gt=0)
    image_job_deadline_seconds: float = Field(5 * 60, gt=0)
    job_late_watch_seconds: float = Field(30 * 60, ge=0)
    demo_job_seconds: float = Field(4, ge=0, le=3600)
    # Deep research (jobs/kinds/research.py): tasks run up to 30 minutes (Valyu's heavy mode
    # longer: raise the deadline for it); the demo task takes 5 steps of this many seconds.
    research_job_deadline_seconds: float = Field(30 * 60, gt=0)
    research_poll_seconds: float = Field(10, gt=0, le=300)
    demo_research_step_seconds: float = Field(20, ge=0, le=3600)
    output_store_url: str | None = None
    output_store_options: dict[str, str] = Field(default_factory=dict)
    webhook_retry_base_seconds: float = Field(5, gt=0)
    webhook_max_attempts: int = Field(7, ge=1, le=20)
    # Outbound webhooks to private or loopback addresses: unset allows them in development only.
    webhook_allow_private_urls: bool | None = None

    allow_embedded_in_production: bool = False
    metrics_port: int | None = Field(None, ge=1, le=65535)
    invariant_check_interval_seconds: float = Field(60, gt=0)

    # Speech-to-text (speech/): real-time sessions and file transcription.
    stt_default_model: str = "demo"
    stt_slice_seconds: int = Field(60, ge=1, le=3600)
    stt_max_session_seconds: int = Field(3600, ge=1)
    stt_idle_timeout_seconds: float = Field(30, gt=0)
    stt_max_frame_bytes: int = Field(64 * 1024, ge=320)
    stt_max_lead_seconds: float = Field(5, ge=0)
    stt_close_timeout_seconds: float = Field(10, gt=0)
    stt_ticket_ttl_seconds: int = Field(60, ge=5, le=600)
    stt_max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    # Payments (SSLCommerz). Without a store id: the local demo gateway (never in production).
    sslcommerz_store_id: str | None = Field(None, min_length=1, max_length=100)
    sslcommerz_store_password: SecretStr | None = None
    sslcommerz_sandbox: bool = True
    sslcommerz_base_url: str | None = None
    public_api_url: str = "http://127.0.0.1:8000"
    payment_return_url: str | None = None
    payment_recheck_after_seconds: float = Field(300, gt=0)
    payment_order_expiry_seconds: float = Field(24 * 3600, gt=0)
    subscription_grace_seconds: float = Field(7 * 24 * 3600, ge=0)
    subscription_renewal_notice_seconds: float = Field(3 * 24 * 3600, ge=0)

    @field_validator(
        "login_failure_limits_per_account",
        "login_failure_limits_per_address",
        "signup_limits_per_address",
        "password_reset_limits_per_address",
        "password_reset_limits_per_email",
        "verification_email_limits_per_address",
        "verification_email_limits_per_email",
    )
    @classmethod
    def _limits_parse(cls, value: str, info: ValidationInfo) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"LIPIKA_{info.field_name.upper()} must be {_LIMITS_SYNTAX}") from None
        return value

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.env == "production" and self.secret_key is None:
            raise ValueError("LIPIKA_SECRET_KEY is required when LIPIKA_ENV=production")
        return self

    @model_validator(mode="after")
    def _holds_outlive_what_holds_them(self) -> Settings:
        """A hold released by reconciliation while its stream or provider call still runs lets
        the answer go free, so the hold TTL must exceed each of them by a margin."""
        for name in ("stream_budget_seconds", "provider_timeout_seconds"):
            needed = getattr(self, name) + HOLD_TTL_MARGIN_SECONDS
            if self.hold_ttl_seconds < needed:
                raise ValueError(
                    f"LIPIKA_HOLD_TTL_SECONDS ({self.hold_ttl_seconds}) must be at least "
                    f"LIPIKA_{name.upper()} ({getattr(self, name):g}) + "
                    f"{HOLD_TTL_MARGIN_SECONDS}: a hold that expires while its answer is still "
                    "being delivered is released, and the answer goes free"
                )
        return self

    @model_validator(mode="after")
    def _idempotency_locks_outlive_requests(self) -> Settings:
        """A key whose lock runs out while its request still waits on the provider would let a
        retry run the request a second time."""
        needed = self.provider_timeout_seconds + HOLD_TTL_MARGIN_SECONDS
        if self.idempotency_lock_seconds < needed:
            raise ValueError(
                f"LIPIKA_IDEMPOTENCY_LOCK_SECONDS ({self.idempotency_lock_seconds}) must be at "
                f"least LIPIKA_PROVIDER_TIMEOUT_SECONDS ({self.provider_timeout_seconds:g}) + "
                f"{HOLD_TTL_MARGIN_SECONDS}: a retry after the lock runs out runs the request again"
            )
        return self

    @model_validator(mode="after")
    def _operators_live_in_the_database(self) -> Settings:
        # An empty value named nobody, and ignoring it changes nothing; any address is refused.
        if self.operator_emails and self.operator_emails.strip():
            raise ValueError(
                "LIPIKA_OPERATOR_EMAILS is no longer read: unset it and name each operator "
                "with `lipika operators add --email X` (the address must be verified)"
            )
        return self

    @model_validator(mode="after")
    def _sslcommerz_store_is_whole(self) -> Settings:
        if bool(self.sslcommerz_store_id) != bool(self.sslcommerz_store_password):
            raise ValueError(
                "LIPIKA_SSLCOMMERZ_STORE_ID and LIPIKA_SSLCOMMERZ_STORE_PASSWORD go together"
            )
        return self

    @property
    def payment_return_link(self) -> str:
        """Where the buyer's browser lands after the gateway (the front end's page)."""
        return self.payment_return_url or self.app_link("/billing/return")

    @model_validator(mode="after")
    def _one_kind_of_smtp_tls(self) -> Settings:
        if self.smtp_tls and self.smtp_starttls:
            raise ValueError(
                "LIPIKA_SMTP_TLS (TLS from the first byte, usually port 465) and "
                "LIPIKA_SMTP_STARTTLS (upgrade after connecting, usually 587) exclude each other"
            )
        return self

    @model_validator(mode="after")
    def _production_runs_on_shared_storage(self) -> Settings:
        """Production on SQLite and the in-process Redis stand-in would look healthy while each
        pod kept its own ledger; refuse it unless an operator says so explicitly."""
        if self.env != "production":
            return self
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if secret.startswith(EXAMPLE_SECRET_PREFIX) or len(secret) < MIN_PRODUCTION_SECRET_CHARS:
            raise ValueError(
                "LIPIKA_SECRET_KEY is the example's placeholder or shorter than "
                f"{MIN_PRODUCTION_SECRET_CHARS} characters; generate one "
                "(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.allow_embedded_in_production:
            return self
        embedded = [
            name
            for name, value in (
                ("LIPIKA_DATABASE_URL", self.database_url),
                ("LIPIKA_CHECKPOINT_DATABASE_URL", self.checkpoint_database_url),
            )
            if not value or value.startswith("sqlite")
        ]
        if not self.redis_url:
            embedded.append("LIPIKA_REDIS_URL")
        if embedded:
            raise ValueError(
                f"LIPIKA_ENV=production needs {', '.join(embedded)} (PostgreSQL and Redis); "
                "set LIPIKA_ALLOW_EMBEDDED_IN_PRODUCTION=true to run embedded on purpose"
            )
        return self

    def prepare_local_storage(self) -> None:
        """Creates the folders of the SQLite files and of the generated secret, so a first start
        or operator command never fails on a missing folder (a read-only one: one clear line)."""
        folders = {
            Path(p).parent
            for p in (sqlite_path(self.app_db_url), sqlite_path(self.checkpoint_db))
            if p
        }
        if self.secret_key is None:
            folders.add(self.data_dir)
        for folder in sorted(folders):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot create {folder} for the embedded storage (LIPIKA_DATA_DIR, "
                    f"LIPIKA_DATABASE_URL, LIPIKA_CHECKPOINT_DATABASE_URL): {exc.strerror or exc}"
                ) from None

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
    def smtp_uses_starttls(self) -> bool:
        return not self.smtp_tls if self.smtp_starttls is None else self.smtp_starttls

    def app_link(self, path: str, token: str | None = None) -> str:
        """A link into the front end (which posts a token it carries back to the API)."""
        query = f"?{urlencode({'token': token})}" if token is not None else ""
        return f"{self.public_app_url.rstrip('/')}{path}{query}"

    @property
    def cors_allowed(self) -> tuple[list[str], str | None]:
        """(origins, origin regex) for the CORS middleware."""
        origins = [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]
        if origins or self.env == "production":
            return origins, None
        return [], LOCAL_ORIGINS

    @property
    def webhook_private_urls_allowed(self) -> bool:
        if self.webhook_allow_private_urls is not None:
            return self.webhook_allow_private_urls
        return self.env == "development"

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
