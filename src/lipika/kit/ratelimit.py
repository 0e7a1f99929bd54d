"""Abuse limits on shared atomic counters: the `limits` library's fixed windows, kept in Redis
when it is configured (one atomic INCRBY per window, so every replica counts against the same
windows), or in process memory in the embedded default.

An attempt is counted before the work it guards (so concurrent attempts can never get past a
full window together), and may be given back afterwards: a login counts failures only by
giving back the attempts that succeeded."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

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
    per account: `5/minute;20/hour;100/day` (each window must have room; the short ones are
    counted first, so an attempt a short window refuses leaves the long ones untouched)."""

    name: str
    windows: tuple[RateLimitItem, ...]

    @classmethod
    def parse(cls, name: str, windows: str) -> Limit:
        return cls(name, tuple(sorted(parse_many(windows), key=lambda w: w.get_expiry())))


@dataclass(frozen=True, slots=True)
class Quota:
    """`cost` to count in one window of one subject: e.g. 900 tokens in the minute of a
    workspace (`name` "tpm", subject "ws:<id>")."""

    name: str
    window: RateLimitItem
    subject: str
    cost: int = 1

    @property
    def key(self) -> str:
        return self.window.key_for(self.name, self.subject)


@dataclass(frozen=True, slots=True)
class QuotaState:
    """What a quota's window had left after a count, and when it starts again (epoch)."""

    quota: Quota
    remaining: int
    reset_at: float


class QuotaExceeded(Exception):  # noqa: N818 - the domain maps it to its own error
    def __init__(self, state: QuotaState) -> None:
        super().__init__(f"{state.quota.name} of {state.quota.subject} exceeded")
        self.state = state


def subject_key(value: str) -> str:
    """A stable key for a subject that keeps personal data (an e-mail) out of the counters."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class Limiter:
    """Counts attempts per (limit, subject) and refuses with 429 `too_many_attempts`, with
    `Retry-After` set to when the full window starts again."""

    def __init__(self, storage: Storage, pool: redis.asyncio.ConnectionPool | None = None) -> None:
        self.storage = storage
        self.windows = FixedWindowRateLimiter(storage)
        self._pool = pool

    @classmethod
    def open(cls, redis_url: str | None, key_prefix: str, namespace: str = "abuse") -> Limiter:
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
            # Not `:limits`, where the first version kept moving windows (lists) under the
            # same names: a rollout would meet them and fail with WRONGTYPE until they expire.
            key_prefix=f"{key_prefix}:{namespace}",
            connection_pool=pool,
        )
        return cls(storage, pool)

    async def consume(self, limit: Limit, subject: str) -> None:
        """Counts one attempt in every window, or refuses it (429) if a window is full; a
        refused attempt counts in no window."""
        counted: list[RateLimitItem] = []
        for window in limit.windows:
            if not await self.windows.hit(window, limit.name, subject):
                await self._give_back(limit, subject, [*counted, window])
                stats = await self.windows.get_window_stats(window, limit.name, subject)
                # Redis reports whole seconds left, rounded to the nearest: one more is never
                # too early.
                retry_after = round(stats.reset_time - time.time()) + 1
                raise TooManyAttempts(
                    "too many attempts; try again later", retry_after=retry_after, limit=limit.name
                )
            counted.append(window)

    async def give_back(self, limit: Limit, subject: str) -> None:
        """Uncounts an attempt that `consume` counted (e.g. a login that succeeded)."""
        await self._give_back(limit, subject, limit.windows)

    async def _give_back(
        self, limit: Limit, subject: str, windows: Sequence[RateLimitItem]
    ) -> None:
        await asyncio.gather(*(self.windows.hit(w, limit.name, subject, cost=-1) for w in windows))

    async def take(self, quotas: Sequence[Quota]) -> list[QuotaState]:
        """Counts each quota's cost in its window, in order, or none of them: a quota without
        room raises `QuotaExceeded` naming it, after every count made here is given back. One
        atomic increment per quota (then one expiry read per quota for the reset time)."""
        counted: list[tuple[Quota, int]] = []
        for quota in quotas:
            value = await self.storage.incr(quota.key, quota.window.get_expiry(), quota.cost)
            counted.append((quota, value))
            if value > quota.window.amount:
                await self._uncount([q for q, _ in counted])
                used = value - quota.cost
                raise QuotaExceeded(
                    QuotaState(quota, max(0, quota.window.amount - used), await self._reset(quota))
                )
        return [
            QuotaState(quota, max(0, quota.window.amount - value), await self._reset(quota))
            for quota, value in counted
        ]

    async def give_back_cost(self, quota: Quota, cost: int, *, if_before: float) -> None:
        """Uncounts `cost` of a quota counted earlier, if its window has not started again
        since (`if_before`: the window's reset time when it was counted)."""
        if cost > 0 and time.time() < if_before:
            await self.storage.incr(quota.key, quota.window.get_expiry(), -cost)

    async def _uncount(self, quotas: Sequence[Quota]) -> None:
        await asyncio.gather(
            *(self.storage.incr(q.key, q.window.get_expiry(), -q.cost) for q in quotas)
        )

    async def _reset(self, quota: Quota) -> float:
        return await self.storage.get_expiry(quota.key)

    async def aclose(self) -> None:
        """Closes the Redis connections, or stops the in-memory store's expiry task."""
        if self._pool is not None:
            await self._pool.aclose()
        elif isinstance(self.storage, MemoryStorage) and self.storage.timer is not None:
            self.storage.timer.cancel()
