"""Abuse limits on shared atomic counters: the `limits` library's moving windows, kept in Redis
when it is configured (its Lua scripts count atomically, so every replica counts against the
same windows), or in process memory in the embedded default."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import redis.asyncio
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from lipika.errors import LipikaError

# A Redis that hangs must not hang the requests counted on it: they fail (503) instead.
_REDIS_TIMEOUT_SECONDS = 2


class TooManyAttempts(LipikaError):
    status_code = 429
    code = "too_many_attempts"
    type = "rate_limit_error"


@dataclass(frozen=True, slots=True)
class Limit:
    """The windows that bound one kind of attempt by one kind of subject, e.g. failed logins
    per account: `5/minute;20/hour;100/day` (each window must have room)."""

    name: str
    windows: tuple[RateLimitItem, ...]

    @classmethod
    def parse(cls, name: str, windows: str) -> Limit:
        return cls(name, tuple(parse_many(windows)))


def subject_key(value: str) -> str:
    """A stable key for a subject that keeps personal data (an e-mail) out of the counters."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class Limiter:
    """Counts attempts per (limit, subject) and refuses with 429 `too_many_attempts`, with
    `Retry-After` set to when the fullest window has room again."""

    def __init__(self, storage: Storage, pool: redis.asyncio.ConnectionPool | None = None) -> None:
        self.storage = storage
        self.windows = MovingWindowRateLimiter(storage)
        self._pool = pool

    @classmethod
    def open(cls, redis_url: str | None, key_prefix: str) -> Limiter:
        if not redis_url:
            return cls(MemoryStorage())
        pool = redis.asyncio.ConnectionPool.from_url(
            redis_url,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
        )
        storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix=f"{key_prefix}:limits",
            connection_pool=pool,
        )
        return cls(storage, pool)

    async def check(self, limit: Limit, subject: str) -> None:
        """Refuses if any window is full; counts nothing (see `hit`)."""
        retry_after = await self.retry_after(limit, subject)
        if retry_after is not None:
            raise _refusal(limit, retry_after)

    async def hit(self, limit: Limit, subject: str) -> bool:
        """Counts one attempt in every window with room; False if a window was full. Each
        window's check-and-count is one atomic step, so concurrent attempts never overfill it."""
        counted = await asyncio.gather(
            *(self.windows.hit(w, limit.name, subject) for w in limit.windows)
        )
        return all(counted)

    async def consume(self, limit: Limit, subject: str) -> None:
        """Counts one attempt, or refuses if a window is full."""
        if not await self.hit(limit, subject):
            raise _refusal(limit, await self.retry_after(limit, subject) or 1)

    async def retry_after(self, limit: Limit, subject: str) -> float | None:
        """Seconds until every full window has room again, or None if none is full."""
        stats = await asyncio.gather(
            *(self.windows.get_window_stats(w, limit.name, subject) for w in limit.windows)
        )
        full = [s.reset_time for s in stats if s.remaining <= 0]
        return max(full) - time.time() if full else None

    async def aclose(self) -> None:
        """Closes the Redis connections, or stops the in-memory store's expiry task."""
        if self._pool is not None:
            await self._pool.aclose()
        elif isinstance(self.storage, MemoryStorage) and self.storage.timer is not None:
            self.storage.timer.cancel()


def _refusal(limit: Limit, retry_after: float) -> TooManyAttempts:
    return TooManyAttempts(
        "too many attempts; try again later", retry_after=retry_after, limit=limit.name
    )
