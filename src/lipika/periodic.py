"""Periodic work: one loop per pod, one Redis lock, the tasks of every domain.

Each domain registers its own task at start-up (billing: reconciliation; next, jobs: adopting
jobs whose lease expired; payments: re-checking pending ones), so the loop and billing never
import the domains above them. Only the pod holding the lock runs a pass; every task is
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

LOCK_NAME = "lipika:lock:reconcile"

# A task returns a report to log (a dataclass of counts, or a mapping); all zeros: quiet.
PeriodicTask = Callable[[], Awaitable[Any]]


@dataclass
class PeriodicTasks:
    tasks: dict[str, PeriodicTask] = field(default_factory=dict)

    def register(self, name: str, task: PeriodicTask) -> None:
        if name in self.tasks:
            raise ValueError(f"a periodic task named {name!r} is already registered")
        self.tasks[name] = task

    async def run_once(self) -> dict[str, Any]:
        """One pass of every task, in registration order; one task failing skips only itself."""
        reports: dict[str, Any] = {}
        for name, task in self.tasks.items():
            try:
                reports[name] = report = await task()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the other tasks still run
                log.exception("periodic_task_failed", task=name)
                continue
            counts = _counts(report)
            if any(counts.values()):
                log.info("periodic_task_done", task=name, **counts)
        return reports

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
                lock = redis.lock(LOCK_NAME, timeout=max(60.0, interval * 4), blocking=False)
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
