"""Coalesce concurrent calls into batches, so a burst costs one round trip instead of many."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Runs `run(items)` on whatever has queued up, with at most `max_in_flight` runs at once.

    An idle batcher sends each item at once (a batch of one: no added latency); under load, items
    that arrive while runs are in flight wait and leave together in the next run. Runs happen in
    their own tasks, so a caller that is cancelled does not cancel work already sent; `orphan` is
    told of every result whose caller had gone, so it can be undone.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int = 32,
        max_in_flight: int = 1,
        orphan: Callable[[T, R], None] | None = None,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._orphan = orphan
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start_runs()
        return await future

    def _start_runs(self) -> None:
        while self._pending and self._in_flight < self._max_in_flight:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._in_flight += 1
            task = asyncio.create_task(self._run_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - every waiter learns of the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (item, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
                elif self._orphan is not None:
                    self._orphan(item, result)
        finally:
            self._in_flight -= 1
            self._start_runs()

    async def drain(self) -> None:
        """Waits for every run in flight (at shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
