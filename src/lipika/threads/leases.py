"""One run per thread, held as a lease on the thread's row in the app database.

A message's run takes the thread with one conditional UPDATE (see `ThreadRepository.take_run`);
this process's heartbeat then renews the leases of all its runs in one statement every third of
the lease. A process that dies stops renewing, and its threads are free again when their leases
expire, within about one lease. Redis plays no part: a Redis restart loses nothing.

Two runs never answer one thread at once. A run stops itself (`on_lost`) when a renewal finds
its lease taken over (the fence moved), and also when no renewal has succeeded for the lease
less one renewal period, measured on this process's monotonic clock from before the statement
that set the expiry: the database computed that expiry on its own clock after that moment, so
another process can take the thread only after this one has stopped its run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.agent.context import STEP_OWNER
from lipika.billing.models import Hold
from lipika.billing.policy import Outcome
from lipika.billing.resolvers import HoldResolvers, Later, Release, Resolution
from lipika.db import utcnow
from lipika.kit.tasks import cancel_and_wait
from lipika.threads.repository import ThreadRepository

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class RunLease:
    """A run's hold on a thread: `taken_at` is the loop time just before the statement that
    took it."""

    thread_id: uuid.UUID
    run_id: uuid.UUID
    fence: int
    taken_at: float


@dataclass(slots=True)
class _Held:
    lease: RunLease
    on_lost: Callable[[], object]
    deadline: asyncio.TimerHandle


class RunLeases:
    """This process's run leases: its owner id, the heartbeat that renews them, and the
    release of each when its run ends (and of all of them at shutdown)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], lease_seconds: float
    ) -> None:
        self.sessionmaker = sessionmaker
        self.lease = timedelta(seconds=lease_seconds)
        self.renew_every = lease_seconds / 3
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._held: dict[uuid.UUID, _Held] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def _stop_after(self) -> float:
        """How long after a successful renewal's start a run may go on without another."""
        return self.lease.total_seconds() - self.renew_every

    @staticmethod
    def clock() -> float:
        return asyncio.get_running_loop().time()

    def hold(self, lease: RunLease, on_lost: Callable[[], object]) -> None:
        """Keeps the lease renewed until `release`; calls `on_lost` once if it is lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.call_at(lease.taken_at + self._stop_after, self._lose, lease.run_id)
        self._held[lease.run_id] = _Held(lease, on_lost, deadline)

    async def release(self, lease: RunLease) -> None:
        """Frees the thread, if this run still holds it."""
        held = self._held.pop(lease.run_id, None)
        if held is not None:
            held.deadline.cancel()
        async with self.sessionmaker.begin() as session:
            await ThreadRepository(session).release_run(lease.thread_id, lease.fence)

    async def renew(self) -> None:
        """Renews every lease this process holds, in one statement; a run whose lease is gone
        is stopped."""
        if not self._held:
            return
        started = self.clock()
        run_ids = list(self._held)
        async with self.sessionmaker.begin() as session:
            renewed = await ThreadRepository(session).renew_runs(self.owner, run_ids, self.lease)
        loop = asyncio.get_running_loop()
        for run_id in run_ids:
            held = self._held.get(run_id)
            if held is None:  # released while the renewal ran
                continue
            if run_id not in renewed:
                self._lose(run_id)
                continue
            held.deadline.cancel()
            held.deadline = loop.call_at(started + self._stop_after, self._lose, run_id)

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="run-lease-heartbeat")

    async def aclose(self) -> None:
        """Stops the heartbeat and frees every thread this process still holds (if the
        database cannot be reached, their leases expire instead)."""
        if self._heartbeat is not None:
            await cancel_and_wait(self._heartbeat)
        for held in self._held.values():
            held.deadline.cancel()
        self._held.clear()
        try:
            async with self.sessionmaker.begin() as session:
                await ThreadRepository(session).release_owner(self.owner)
        except Exception as exc:  # noqa: BLE001 - shutdown goes on; the leases expire
            log.warning("run_leases_not_released", owner=self.owner, error=repr(exc))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.renew()
            except Exception as exc:  # noqa: BLE001 - the deadlines stop runs that stay unrenewed
                log.warning("run_lease_renewal_failed", error=repr(exc), runs=len(self._held))

    def _lose(self, run_id: uuid.UUID) -> None:
        held = self._held.pop(run_id, None)
        if held is None:
            return
        held.deadline.cancel()
        log.warning("run_lease_lost", thread_id=str(held.lease.thread_id), run_id=str(run_id))
        held.on_lost()


def register_step_holds(
    resolvers: HoldResolvers,
    sessionmaker: async_sessionmaker[AsyncSession],
    lease_seconds: float,
) -> None:
    """Tells reconciliation about agent steps' holds: their run holds a lease on its thread, so
    a hold whose run no longer does (its pod died) is released on the next pass, within a
    lease and a reconcile period of the death, instead of at the hold's expiry.

    A hold younger than one lease is left alone: every run of a thread takes its lease before
    its first hold, and one that runs without a thread (the agent used directly) is never
    mistaken for an orphan while it is still likely to be running.
    """
    min_age = timedelta(seconds=lease_seconds)

    async def resolve(hold: Hold) -> Resolution:
        if utcnow() - hold.created_at < min_age:
            return Later()
        run_id = _run_of(hold.owner_id)
        if run_id is None:
            return Release(Outcome.ABANDONED)
        async with sessionmaker() as session:
            live = await ThreadRepository(session).live_runs([run_id])
        return Later() if run_id in live else Release(Outcome.ABANDONED)

    resolvers.register(STEP_OWNER, resolve, leased=True)


def _run_of(owner_id: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID((owner_id or "").partition(":")[0])
    except ValueError:
        return None
