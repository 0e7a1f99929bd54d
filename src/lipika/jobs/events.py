"""Live job events over Redis pub/sub (the in-process stand-in in the embedded default), so any
pod can stream any job's progress; the job row stays the truth a stream starts from."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.asyncio import Redis

PROGRESS_TTL_SECONDS = 3600


class JobEvents:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def channel(self, job_id: uuid.UUID) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    @property
    def handoff_channel(self) -> str:
        """Where a stopping pod says it gave its leases up (others adopt at once)."""
        return f"{self.prefix}:jobs:handoff"

    async def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None:
        """Best effort: a lost event is caught up by the stream's re-read of the row."""
        with contextlib.suppress(Exception):
            await self.redis.publish(self.channel(job_id), orjson.dumps(event))

    async def progress(self, job_id: uuid.UUID, percent: int) -> None:
        """Live progress: kept in Redis (not written to the job row on every poll) and sent."""
        with contextlib.suppress(Exception):
            await self.redis.set(
                f"{self.prefix}:job:{job_id}:progress", percent, ex=PROGRESS_TTL_SECONDS
            )
        await self.publish(job_id, {"type": "progress", "progress": percent})

    async def last_progress(self, job_id: uuid.UUID) -> int | None:
        with contextlib.suppress(Exception):
            value = await self.redis.get(f"{self.prefix}:job:{job_id}:progress")
            return int(value) if value is not None else None
        return None

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(channel)
        try:
            yield Subscription(pubsub)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(channel)
                await pubsub.aclose()


class Subscription:
    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after `timeout` seconds without one."""
        message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if message is None or message.get("type") != "message":
            return None
        return orjson.loads(message["data"])
