"""Run Alembic migrations programmatically (used by `lipika migrate`, start-up and tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config


def alembic_config(async_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "lipika:migrations")
    config.set_main_option("sqlalchemy.url", async_url.replace("%", "%%"))
    return config


def upgrade(async_url: str, revision: str = "head") -> None:
    """Sync on purpose: env.py runs its own event loop, so call this from a worker thread."""
    command.upgrade(alembic_config(async_url), revision)


def downgrade(async_url: str, revision: str) -> None:
    command.downgrade(alembic_config(async_url), revision)
