"""The job runner: each job an asyncio task in the pod that accepted it, durable in its row.

- A job's lease (`lease_owner`, `lease_expires_at`) is renewed with every other job of this
  process in one statement per heartbeat (a third of the lease). A job that statement no
  longer returns was cancelled or adopted elsewhere: its task stops without settling.
- Every write that moves a running job is fenced by `lease_owner`, so exactly one process
  settles it: the one whose write of the final status landed (or the cancel that did).
- Adoption (a periodic task, and at once when another pod says it gave its leases up) takes
  live jobs whose lease expired, in one conditional statement, and resumes each from its stored
  operation id by polling: work the provider accepted is never submitted twice.
- A job past its deadline is failed and its hold released; the task then keeps watching the
  operation for a while, and a result that still arrives is kept (nothing is charged:
  `job_finished_after_deadline`).
- At shutdown the runner stops taking jobs, stops its tasks (no settlement) and gives up its
  leases in one statement, then says so on Redis so another pod adopts them without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.billing.meter import Meter
from lipika.billing.policy import Outcome
from lipika.billing.session import outcome_of
from lipika.db import utcnow
from lipika.jobs.events import JobEvents
from lipika.jobs.kinds.base import Accepted, Done, Failed, JobKind, Output, Progress, Step
from lipika.jobs.models import Job, JobStatus
from lipika.jobs.repository import JobRepository
from lipika.jobs.storage import OutputStore
from lipika.kit.tasks import cancel_and_wait
from lipika.providers.errors import ProviderAuthFailed, ProviderError, ProviderRejected

log = structlog.get_logger()

ADOPT_BATCH = 500
DEADLINE_EXCEEDED = "deadline_exceeded"


@dataclass(frozen=True, slots=True)
class AdoptReport:
    adopted: int


class JobObserver:
    """Told of adoptions and finished jobs (the metrics listen here)."""

    def adopted(self, count: int) -> None:
        pass

    def finished(self, kind: str, status: str) -> None:
        pass


# Told of a job's final status inside the transaction that wrote it (the webhooks' outbox).
Notify = Callable[[AsyncSession, Job, Mapping[str, Any]], Awaitable[int]]


@dataclass
class _Live:
    task: asyncio.Task[None]
    watching_late: bool = False  # past its deadline, failed, still watching the operation
    # Its final status is written: the lease no longer matters, the task is settling.
    ended: bool = False


class JobRunner:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        meter: Meter,
        kinds: Mapping[str, JobKind],
        events: JobEvents,
        store: OutputStore,
        *,
        lease_seconds: float,
        late_watch_seconds: float,
        observer: JobObserver | None = None,
        notify: Notify | None = None,
        notified: Callable[[], None] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.meter = meter
        self.kinds = kinds
        self.events = events
        self.store = store
        self.lease = timedelta(seconds=lease_seconds)
        self.renew_every = lease_seconds / 3
        self.late_watch = timedelta(seconds=late_watch_seconds)
        self.observer = observer or JobObserver()
        self.notify = notify
        self.notified = notified
        self.tracer = tracer or trace.NoOpTracer()
        # Tells a job's thread that it ended (the agent's history; set once the agent exists).
        self.thread_note: Callable[[Job], Awaitable[None]] | None = None
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.closing = False
        self._live: dict[uuid.UUID, _Live] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._adopting = asyncio.Lock()

    # -- life of the runner -------------------------------------------------------------------

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._heartbeat(), name="job-lease-heartbeat"),
            asyncio.create_task(self._listen_for_handoffs(), name="job-handoffs"),
        ]

    async def aclose(self) -> None:
        """Stops taking jobs, stops every task (their jobs stay live, unsettled) and gives the
        leases up for another process to adopt at once."""
        self.closing = True
        for loop in self._loops:
            await cancel_and_wait(loop)
        for live in list(self._live.values()):
            await cancel_and_wait(live.task)
        self._live.clear()
        try:
            async with self.sessionmaker.begin() as session:
                freed = await JobRepository(session).give_up(self.owner)
        except Exception as exc:  # noqa: BLE001 - the leases expire instead
            log.warning("job_leases_not_given_up", owner=self.owner, error=repr(exc))
            return
        if freed:
            log.info("job_leases_given_up", jobs=freed)
            with contextlib.suppress(Exception):
                await self.events.redis.publish(self.events.handoff_channel, self.owner)

    @property
    def running(self) -> int:
        return len(self._live)

    def launch(self, job_id: uuid.UUID) -> asyncio.Task[None]:
        task = asyncio.create_task(self._run(job_id), name=f"job-{job_id}")
        self._live[job_id] = _Live(task)
        task.add_done_callback(lambda _: self._forget(job_id, task))
        return task

    def task_of(self, job_id: uuid.UUID) -> asyncio.Task[None] | None:
        live = self._live.get(job_id)
        return live.task if live else None

    async def stop(self, job_id: uuid.UUID) -> None:
        """Stops this process's task of the job, if it runs here (a cancel)."""
        live = self._live.get(job_id)
        if live is not None and live.task is not asyncio.current_task():
            await cancel_and_wait(live.task)

    def _forget(self, job_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        live = self._live.get(job_id)
        if live is not None and live.task is task:
            del self._live[job_id]

    # -- leases ---------------------------------------------------------------------------------

    async def renew(self) -> None:
        """Renews all of this process's leases in one statement; stops the tasks of jobs it no
        longer holds (cancelled, or adopted after a renewal came too late)."""
        # Only the jobs running before the statement: one launched while it ran may be missing
        # from its answer without having lost anything.
        before = {job_id: live for job_id, live in self._live.items() if self._leased(live)}
        if not before:
            return
        async with self.sessionmaker.begin() as session:
            held = await JobRepository(session).renew(self.owner, self.lease)
        for job_id, live in before.items():
            if self._leased(live) and job_id not in held and not live.task.done():
                log.warning("job_lease_lost", job_id=str(job_id))
                live.task.cancel()

    @staticmethod
    def _leased(live: _Live) -> bool:
        """Whether the task still runs under its lease (not ended, not watching late)."""
        return not live.ended and not live.watching_late

    async def adopt(self) -> AdoptReport:
        """Takes live jobs whose lease expired or was given up, and resumes each here."""
        if self.closing:
            return AdoptReport(0)
        adopted = 0
        async with self._adopting:
            while not self.closing:
                async with self.sessionmaker.begin() as session:
                    taken = await JobRepository(session).adopt(self.owner, self.lease, ADOPT_BATCH)
                for job_id in taken:
                    if job_id not in self._live:
                        self.launch(job_id)
                adopted += len(taken)
                if len(taken) < ADOPT_BATCH:
                    break
        if adopted:
            self.observer.adopted(adopted)
            log.info("jobs_adopted", jobs=adopted, owner=self.owner)
        return AdoptReport(adopted)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.renew()
            except Exception as exc:  # noqa: BLE001 - fenced writes keep a late owner harmless
                log.warning("job_lease_renewal_failed", error=repr(exc), jobs=len(self._live))

    async def _listen_for_handoffs(self) -> None:
        """Adopts at once the jobs another pod gave up as it stopped."""
        while True:
            try:
                async with self.events.subscribe(self.events.handoff_channel) as subscription:
                    while True:
                        message = await subscription.pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=self.renew_every
                        )
                        if message and message.get("data") != self.owner:
                            await self.adopt()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the periodic adoption still runs
                log.warning("job_handoff_listener_failed", error=repr(exc))
                await asyncio.sleep(self.renew_every)

    # -- running one job ------------------------------------------------------------------------

    async def _run(self, job_id: uuid.UUID) -> None:
        # Each run of a job is a trace of its own (not a child of the request that submitted
        # it, which ended long before), linked to that request's span.
        submitted = trace.get_current_span().get_span_context()
        links = [trace.Link(submitted)] if submitted.is_valid else []
        with self.tracer.start_as_current_span(
            "job.run",
            context=otel_context.Context(),
            kind=trace.SpanKind.INTERNAL,
            links=links,
            attributes={"lipika.job.id": str(job_id)},
        ):
            await self._run_traced(job_id)

    async def _run_traced(self, job_id: uuid.UUID) -> None:
        try:
            await self._drive(job_id)
        except asyncio.CancelledError:
            raise  # stopped (shutdown, cancel, lost lease): the job's state stays as it is
        except Exception as exc:  # noqa: BLE001 - our own failure: the job fails, free
            log.exception("job_failed_internally", job_id=str(job_id))
            with contextlib.suppress(Exception):
                job = await self._load(job_id)
                if job is not None:
                    await self._fail(
                        job, Failed(Outcome.INTERNAL_ERROR, "internal_error", repr(exc)[:300])
                    )

    async def _drive(self, job_id: uuid.UUID) -> None:
        job = await self._load(job_id)
        if job is None or job.lease_owner != self.owner or job.status.terminal:
            return
        kind = self.kinds[job.kind]
        if job.hold_id is None:  # accepted, but its process died before the hold was placed
            await self._fail(job, Failed(Outcome.INTERNAL_ERROR, "interrupted", "never started"))
            return
        step: Step | None = None
        if job.operation_id is None:
            if job.attempts > 1:  # its process died mid-call: the provider may have the work
                await self._fail(
                    job,
                    Failed(
                        Outcome.INTERNAL_ERROR,
                        "interrupted",
                        "the server running this job stopped before the provider answered",
                    ),
                )
                return
            step = await self._call(kind.start(job), submitting=True)
        while True:
            if step is None:
                if utcnow() >= job.deadline:
                    await self._past_deadline(job, kind)
                    return
                step = await self._call(kind.poll(job), submitting=False)
            match step:
                case Accepted(operation_id=operation_id):
                    job.operation_id = operation_id
                    if not await self._write(job, {"operation_id": operation_id}):
                        return
                case Progress(percent=percent):
                    if percent is not None:
                        await self.events.progress(job.id, percent)
                case Done():
                    await self._succeed(job, step)
                    return
                case Failed():
                    await self._fail(job, step)
                    return
            step = None
            await asyncio.sleep(_until(job.deadline, kind.poll_seconds))

    async def _call(self, call: Awaitable[Step], *, submitting: bool) -> Step:
        """A kind's step; a provider failure at submit fails the job (free), one while polling
        is retried at the next poll unless it says the operation is gone or unauthorised."""
        try:
            return await call
        except ProviderError as exc:
            if submitting or isinstance(exc, ProviderRejected | ProviderAuthFailed):
                outcome = outcome_of(exc, produced_output=False)
                return Failed(outcome, exc.code, str(exc)[:500] or exc.code)
            log.warning("job_poll_failed", error=repr(exc))
            return Progress(None)

    async def _succeed(self, job: Job, done: Done) -> None:
        refs = await self._keep(job, done.outputs)
        finished = {
            "status": JobStatus.SUCCEEDED,
            "usage": dict(done.usage),
            "result": refs,
            "outcome": Outcome.SUCCESS.value,
            "progress": 100,
            "finished_at": utcnow(),
        }
        if not await self._write(job, finished):
            return  # cancelled or adopted meanwhile: whoever did settles
        assert job.hold_id is not None
        settlement = await asyncio.shield(
            self.meter.settle(
                job.hold_id, Outcome.SUCCESS, usage=done.usage, rates=job.rates, price=job.price
            )
        )
        await self._note(job.id, {"charged": settlement.charged})
        await self._announce(job.id)

    async def _fail(self, job: Job, failed: Failed, **extra: Any) -> bool:
        finished = {
            "status": JobStatus.FAILED,
            "outcome": failed.outcome.value,
            "error_code": failed.code[:60],
            "error_message": failed.message[:500],
            "finished_at": utcnow(),
            **extra,
        }
        if not await self._write(job, finished):
            return False
        if job.hold_id is not None:
            settlement = await asyncio.shield(
                self.meter.settle(job.hold_id, failed.outcome, price=job.price)
            )
            await self._note(job.id, {"charged": settlement.charged})
        await self._announce(job.id)
        return True

    async def _past_deadline(self, job: Job, kind: JobKind) -> None:
        """Fails the job (free); a result that arrives later is kept, and not charged."""
        step = await self._call(kind.poll(job), submitting=False) if job.operation_id else None
        if isinstance(step, Done):
            refs = await self._keep(job, step.outputs)
            await self._fail(
                job,
                Failed(
                    Outcome.JOB_FINISHED_AFTER_DEADLINE,
                    DEADLINE_EXCEEDED,
                    "the provider finished after the job's deadline: the result is kept, free",
                ),
                result=refs,
                usage=dict(step.usage),
            )
            return
        failed = await self._fail(
            job,
            Failed(Outcome.PROVIDER_TIMEOUT, DEADLINE_EXCEEDED, "the job ran past its deadline"),
        )
        if failed and job.operation_id and not isinstance(step, Failed):
            live = self._live.get(job.id)
            if live is not None:
                live.watching_late = True
            await self._watch_late(job, kind)

    async def _watch_late(self, job: Job, kind: JobKind) -> None:
        until = job.deadline + self.late_watch
        while utcnow() < until:
            await asyncio.sleep(_until(until, kind.poll_seconds))
            step = await self._call(kind.poll(job), submitting=False)
            if isinstance(step, Failed):
                return
            if isinstance(step, Done):
                refs = await self._keep(job, step.outputs)
                await self._note(
                    job.id,
                    {
                        "result": refs,
                        "usage": dict(step.usage),
                        "outcome": Outcome.JOB_FINISHED_AFTER_DEADLINE.value,
                    },
                    status=JobStatus.FAILED,
                    error_code=DEADLINE_EXCEEDED,
                )
                log.info("job_finished_after_deadline", job_id=str(job.id))
                return

    # -- helpers ------------------------------------------------------------------------------

    async def _keep(self, job: Job, outputs: tuple[Output, ...]) -> list[dict[str, Any]]:
        refs = []
        for index, output in enumerate(outputs):
            key = output_key(job.id, index)
            await self.store.put(key, output.data)
            refs.append(
                {
                    "index": index,
                    "key": key,
                    "content_type": output.content_type,
                    "bytes": len(output.data),
                }
            )
        return refs

    async def finished(self, session: AsyncSession, job: Job, values: Mapping[str, Any]) -> int:
        """Writes the job's final event for its webhooks, in the transaction of the status."""
        if self.notify is None:
            return 0
        return await self.notify(session, job, values)

    async def _load(self, job_id: uuid.UUID) -> Job | None:
        async with self.sessionmaker() as session:
            return await JobRepository(session).get(job_id)

    async def _write(self, job: Job, values: Mapping[str, Any]) -> bool:
        """A fenced write: False (and the task should stop) if this process lost the job."""
        wrote_event = 0
        async with self.sessionmaker.begin() as session:
            written = await JobRepository(session).update_owned(job.id, self.owner, values)
            if written and "status" in values:
                wrote_event = await self.finished(session, job, values)
        if wrote_event and self.notified is not None:
            self.notified()
        if not written:
            log.info("job_no_longer_ours", job_id=str(job.id))
        elif "status" in values:
            live = self._live.get(job.id)
            if live is not None:
                live.ended = True
            self.observer.finished(job.kind, str(values["status"]))
        return written

    async def _note(self, job_id: uuid.UUID, values: Mapping[str, Any], **where: Any) -> None:
        async with self.sessionmaker.begin() as session:
            await JobRepository(session).update(job_id, values, **where)

    async def _announce(self, job_id: uuid.UUID) -> None:
        """Sends the job's final state to its streams (they re-read the row), and to the agent
        thread that started it."""
        await self.events.publish(job_id, {"type": "finished"})
        await self.tell_thread(job_id)

    async def tell_thread(self, job_id: uuid.UUID) -> None:
        if self.thread_note is None:
            return
        job = await self._load(job_id)
        if job is None or job.thread_id is None:
            return
        try:
            await self.thread_note(job)
        except Exception as exc:  # noqa: BLE001 - the job's own state and stream are the truth
            log.warning("job_thread_note_failed", job_id=str(job_id), error=repr(exc))


def output_key(job_id: uuid.UUID, index: int) -> str:
    return f"jobs/{job_id}/{index}"


def _until(moment: datetime, at_most: float) -> float:
    return max(0.0, min(at_most, (moment - utcnow()).total_seconds()))
