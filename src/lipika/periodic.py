"""Periodic work: one loop per pod, one Redis lock, the tasks of every domain.

Each domain registers its own task at start-up (billing: reconciliation; ops: the invariant
alarms; next, jobs: adopting jobs whose lease expired; payments: re-checking pending ones), so
the loop and billing never import the domains above them. A task may run less often than the
loop (`every`). Only the pod holding the lock runs a pass; every task is
idempotent, so a pod dying half-way (or two passes after a lock expiry) costs repeated no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis

log = structlog.get_logger()

LOCK_NAME = "lipika:lock:reconcile"  # with the default key prefix; see `lock_name`

# A task returns a report to log (a dataclass of counts, or a mapping); all zeros: quiet.
PeriodicTask = Callable[[], Awaitable[Any]]


def lock_name(key_prefix: str) -> str:
    """The loop's lock under `LIPIKA_REDIS_KEY_PREFIX`, so two deployments sharing one Redis
    each run their own loop."""
    return f"{key_prefix}:lock:reconcile"


@dataclass
class _Entry:
    task: PeriodicTask
    every: float | None  # seconds between runs; None: every pass
    idle: Callable[[], None] | None  # told when another pod holds the lock
    due: float = 0.0  # time.monotonic() of the next run


@dataclass
class PeriodicTasks:
    lock: str = LOCK_NAME
    entries: dict[str, _Entry] = field(default_factory=dict)

    def register(
        self,
        name: str,
        task: PeriodicTask,
        *,
        every: float | None = None,
        idle: Callable[[], None] | None = None,
    ) -> None:
        """Adds `task` to every pass, or to one pass in `every` seconds. `idle` is called on
        each pass this pod sits out (another pod holds the lock): e.g. to clear gauges that
        only the pod doing the work may report."""
        if name in self.entries:
            raise ValueError(f"a periodic task named {name!r} is already registered")
        self.entries[name] = _Entry(task, every, idle)

    async def run_once(self) -> dict[str, Any]:
        """One pass of every task that is due, in registration order; one task failing skips
        only itself."""
        reports: dict[str, Any] = {}
        for name, entry in self.entries.items():
            now = time.monotonic()
            if now < entry.due:
                continue
            if entry.every is not None:
                entry.due = now + entry.every
            try:
                reports[name] = report = await entry.task()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the other tasks still run
                log.exception("periodic_task_failed", task=name)
                continue
            counts = _counts(report)
            if any(counts.values()):
                log.info("periodic_task_done", task=name, **counts)
        return reports

    def sit_out(self) -> None:
        for entry in self.entries.values():
            if entry.idle is not None:
                entry.idle()
            entry.due = 0.0  # whoever takes the lock next runs everything at once

    async def run_forever(
        self,
        redis: Redis,
        interval: float,
        observe: Callable[[float, bool], None] | None = None,
    ) -> None:
        """The loop started by the app's lifespan; only the pod holding the lock works.
        `observe(seconds, failed)` is told of each pass this pod ran (the metrics)."""
        while True:
            started: float | None = None
            try:
                lock = redis.lock(self.lock, timeout=max(60.0, interval * 4), blocking=False)
                acquired = await lock.acquire()
                _raise_if_cancelled()
                if acquired:
                    try:
                        started = time.perf_counter()
                        await self.run_once()
                        if observe:
                            observe(time.perf_counter() - started, False)
                    finally:
                        with contextlib.suppress(Exception):
                            await lock.release()
                else:
                    self.sit_out()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive a bad pass
                log.exception("periodic_pass_failed")
                if observe and started is not None:
                    observe(time.perf_counter() - started, True)
            await asyncio.sleep(interval)


def _counts(report: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return dataclasses.asdict(report)
    return dict(report) if isinstance(report, dict) else {}


def _raise_if_cancelled() -> None:
    """Re-raises a cancellation that a library swallowed (fakeredis's lock uses asyncio.wait_for,
    which on Python 3.11 can eat one), so the app's shutdown is never left waiting."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
