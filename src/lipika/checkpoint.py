"""The checkpoint database: its own connection pool, separate from the app database.

LangGraph's savers take exactly these objects: a psycopg `AsyncConnectionPool` (autocommit,
dict rows) for PostgreSQL, an aiosqlite connection for the embedded SQLite file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lipika.config import Settings
from lipika.kit.urls import sqlite_path


class CheckpointDB:
    """Owns the checkpoint connection(s) for the life of the process."""

    def __init__(self, conn: AsyncConnectionPool | aiosqlite.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, settings: Settings) -> CheckpointDB:
        target = settings.checkpoint_db
        if target.startswith("sqlite"):
            path = sqlite_path(target) or ":memory:"
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path)
            async with conn.execute("PRAGMA journal_mode=WAL"):
                pass
            return cls(conn)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
        }
        pool = AsyncConnectionPool(
            target, min_size=1, max_size=settings.checkpoint_pool_size, kwargs=kwargs, open=False
        )
        await pool.open(wait=False)
        return cls(pool)

    async def ping(self) -> None:
        if isinstance(self.conn, AsyncConnectionPool):
            async with self.conn.connection(timeout=5) as conn:
                await conn.execute("SELECT 1")
        else:
            async with self.conn.execute("SELECT 1"):
                pass

    async def close(self) -> None:
        await self.conn.close()
