"""The checkpointer on the checkpoint database, and the retention policy that bounds it.

LangGraph's savers own their tables (not Alembic's): `setup()` creates or upgrades them at start.
Every step of a run writes a checkpoint holding the whole conversation, so a thread's
checkpoints grow with the square of its length. The policy keeps the latest N checkpoints of
each thread (the latest alone holds the full history; the others allow a look back), pruned
after each run and by `lipika checkpoints prune`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg_pool import AsyncConnectionPool

from lipika.checkpoint import CheckpointDB

# Serialises the savers' setup across processes starting at once (an arbitrary constant).
_SETUP_LOCK_KEY = 0x6C69706B


async def open_saver(db: CheckpointDB) -> BaseCheckpointSaver:
    """The saver for the checkpoint database, with its tables set up."""
    if isinstance(db.conn, AsyncConnectionPool):
        saver = AsyncPostgresSaver(db.conn)
        async with db.conn.connection() as lock_conn:
            await lock_conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
            try:
                await saver.setup()
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))
        return saver
    sqlite_saver = AsyncSqliteSaver(db.conn)
    await sqlite_saver.setup()
    return sqlite_saver


@dataclass(frozen=True, slots=True)
class PruneReport:
    threads: int
    checkpoints_deleted: int


class CheckpointRetention:
    """Keeps the latest `keep` checkpoints of each thread (per namespace) and deletes the rest,
    with their pending writes and, on PostgreSQL, the channel blobs no kept checkpoint uses.

    Only older checkpoints are deleted, and a run writes only newer ones, so pruning a thread
    while it runs loses nothing the run needs.
    """

    def __init__(self, saver: BaseCheckpointSaver, keep: int) -> None:
        if keep < 1:
            raise ValueError("keep at least one checkpoint per thread")
        self.saver = saver
        self.keep = keep

    async def prune(self, thread_ids: Sequence[str]) -> PruneReport:
        deleted = 0
        for thread_id in thread_ids:
            if isinstance(self.saver, AsyncPostgresSaver):
                deleted += await _prune_postgres(self.saver, thread_id, self.keep)
            elif isinstance(self.saver, AsyncSqliteSaver):
                deleted += await _prune_sqlite(self.saver, thread_id, self.keep)
        return PruneReport(len(thread_ids), deleted)

    async def thread_ids(self) -> list[str]:
        """Every thread that has checkpoints."""
        query = "SELECT DISTINCT thread_id FROM checkpoints"
        if isinstance(self.saver, AsyncPostgresSaver):
            async with self.saver.conn.connection() as conn:  # type: ignore[union-attr]
                rows = await (await conn.execute(query)).fetchall()
            return [row["thread_id"] for row in rows]
        if isinstance(self.saver, AsyncSqliteSaver):
            async with self.saver.lock, self.saver.conn.execute(query) as cursor:
                return [row[0] for row in await cursor.fetchall()]
        return []

    async def delete_threads(self, thread_ids: Sequence[str]) -> None:
        for thread_id in thread_ids:
            await self.saver.adelete_thread(thread_id)


_PG_UNKEPT = """
SELECT checkpoint_ns, checkpoint_id FROM (
    SELECT checkpoint_ns, checkpoint_id, row_number() OVER (
        PARTITION BY checkpoint_ns ORDER BY checkpoint_id DESC
    ) AS newer
    FROM checkpoints WHERE thread_id = %s
) AS ranked WHERE newer > %s
"""
_PG_DELETE_WRITES = """
DELETE FROM checkpoint_writes
WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)
"""
_PG_DELETE_CHECKPOINTS = """
WITH deleted AS (
    DELETE FROM checkpoints
    WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)
    RETURNING checkpoint -> 'channel_versions' AS versions
)
SELECT DISTINCT v.key AS channel, v.value AS version
FROM deleted CROSS JOIN LATERAL jsonb_each_text(deleted.versions) AS v
"""
_PG_DETACH_PARENTS = """
UPDATE checkpoints SET parent_checkpoint_id = NULL
WHERE thread_id = %s AND checkpoint_ns = %s AND parent_checkpoint_id = ANY(%s)
"""
_PG_REFERENCED = """
SELECT DISTINCT v.key AS channel, v.value AS version
FROM checkpoints c CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
WHERE c.thread_id = %s AND c.checkpoint_ns = %s
"""
_PG_DELETE_BLOBS = """
DELETE FROM checkpoint_blobs
WHERE thread_id = %s AND checkpoint_ns = %s AND channel = %s AND version = ANY(%s)
"""


async def _prune_postgres(saver: AsyncPostgresSaver, thread_id: str, keep: int) -> int:
    pool: Any = saver.conn
    async with pool.connection() as conn, conn.transaction():
        unkept = await (await conn.execute(_PG_UNKEPT, (thread_id, keep))).fetchall()
        by_namespace: dict[str, list[str]] = {}
        for row in unkept:
            by_namespace.setdefault(row["checkpoint_ns"], []).append(row["checkpoint_id"])
        for namespace, ids in by_namespace.items():
            params = (thread_id, namespace, ids)
            await conn.execute(_PG_DELETE_WRITES, params)
            freed = await (await conn.execute(_PG_DELETE_CHECKPOINTS, params)).fetchall()
            await conn.execute(_PG_DETACH_PARENTS, params)
            referenced = await (await conn.execute(_PG_REFERENCED, params[:2])).fetchall()
            kept = {(r["channel"], r["version"]) for r in referenced}
            garbage: dict[str, list[str]] = {}
            for r in freed:
                if (r["channel"], r["version"]) not in kept:
                    garbage.setdefault(r["channel"], []).append(r["version"])
            for channel, versions in garbage.items():
                await conn.execute(_PG_DELETE_BLOBS, (thread_id, namespace, channel, versions))
    return len(unkept)


_SQLITE_UNKEPT = """
SELECT checkpoint_ns, checkpoint_id FROM (
    SELECT checkpoint_ns, checkpoint_id, row_number() OVER (
        PARTITION BY checkpoint_ns ORDER BY checkpoint_id DESC
    ) AS newer
    FROM checkpoints WHERE thread_id = ?
) WHERE newer > ?
"""


async def _prune_sqlite(saver: AsyncSqliteSaver, thread_id: str, keep: int) -> int:
    conn: aiosqlite.Connection = saver.conn
    async with saver.lock:
        async with conn.execute(_SQLITE_UNKEPT, (thread_id, keep)) as cursor:
            unkept = [(ns, cid) for ns, cid in await cursor.fetchall()]
        if not unkept:
            return 0
        for statement in (
            "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            "UPDATE checkpoints SET parent_checkpoint_id = NULL "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND parent_checkpoint_id = ?",
        ):
            await conn.executemany(statement, [(thread_id, ns, cid) for ns, cid in unkept])
        await conn.commit()
    return len(unkept)
