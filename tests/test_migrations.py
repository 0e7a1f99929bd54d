"""Migrations on a fresh database of each backend: upgrade, downgrade to nothing, upgrade again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import lipika.models  # noqa: F401  (every table on the metadata)
from lipika import migrate
from lipika.db import Base
from lipika.kit.urls import to_async_sqlalchemy_url
from tests.fixtures.databases import PostgresDatabases, require_services


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An async SQLAlchemy URL of a brand-new, empty database."""
    if request.param == "sqlite":
        yield to_async_sqlalchemy_url(f"sqlite:///{tmp_path / 'fresh.db'}")
        return
    require_services()
    databases = PostgresDatabases.create()
    try:
        yield to_async_sqlalchemy_url(databases.app_url)
    finally:
        databases.drop()


def _inspect(conn: Connection) -> tuple[set[str], str | None, list]:
    tables = set(inspect(conn).get_table_names())
    version = None
    if "alembic_version" in tables:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata) if tables - {"alembic_version"} else []
    return tables, version, diffs


async def _state(url: str) -> tuple[set[str], str | None, list]:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_inspect)
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(fresh_database_url: str) -> None:
    url = fresh_database_url
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    expected = set(Base.metadata.tables)
    assert {"users", "workspaces", "memberships", "invitations", "api_keys", "auth_sessions", "refresh_tokens"} <= expected

    tables, version, _ = await _state(url)
    assert tables == set()
    assert version is None

    # env.py runs its own event loop: the migrate functions must run off this one.
    await asyncio.to_thread(migrate.upgrade, url)
    tables, version, diffs = await _state(url)
    assert tables == expected | {"alembic_version"}
    assert version == head
    assert diffs == [], f"the migrations and the models disagree: {diffs}"

    await asyncio.to_thread(migrate.downgrade, url, "base")
    tables, version, _ = await _state(url)
    assert tables <= {"alembic_version"}, tables
    assert version is None

    await asyncio.to_thread(migrate.upgrade, url)
    tables, version, diffs = await _state(url)
    assert tables == expected | {"alembic_version"}
    assert version == head
    assert diffs == []

    # Upgrading an up-to-date database is a no-op.
    await asyncio.to_thread(migrate.upgrade, url)
    assert (await _state(url))[1] == head
