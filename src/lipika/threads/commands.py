"""The operator command behind `lipika checkpoints prune`."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from lipika import migrate
from lipika.agent.checkpoints import CheckpointRetention, open_saver
from lipika.checkpoint import CheckpointDB
from lipika.config import Settings
from lipika.db import create_engine, create_sessionmaker
from lipika.threads.repository import ThreadRepository


@dataclass(frozen=True, slots=True)
class PruneOutcome:
    threads: int
    checkpoints_deleted: int
    orphans_deleted: int


async def prune_checkpoints(settings: Settings, keep: int | None = None) -> PruneOutcome:
    """Keeps the latest `keep` checkpoints of every thread, and deletes every checkpoint of
    threads the app database no longer has (deleted with their workspace, or a crash between
    the two deletes). Ids that are not ours (not UUIDs) are left alone."""
    if settings.embedded:
        await asyncio.to_thread(migrate.upgrade, settings.app_db_url)
    checkpoint_db = await CheckpointDB.open(settings)
    engine = create_engine(settings)
    try:
        retention = CheckpointRetention(
            await open_saver(checkpoint_db), keep or settings.checkpoints_kept_per_thread
        )
        ids: dict[uuid.UUID, str] = {}
        for thread_id in await retention.thread_ids():
            try:
                ids[uuid.UUID(thread_id)] = thread_id
            except ValueError:
                continue
        async with create_sessionmaker(engine)() as session:
            existing = await ThreadRepository(session).existing(list(ids))
        orphans = [ids[i] for i in ids if i not in existing]
        await retention.delete_threads(orphans)
        report = await retention.prune([ids[i] for i in ids if i in existing])
        return PruneOutcome(report.threads, report.checkpoints_deleted, len(orphans))
    finally:
        await engine.dispose()
        await checkpoint_db.close()
