"""The jobs service: submit (admit the hold, write the row, start the task), read, cancel."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from lipika.auth.dependencies import Principal
from lipika.billing.meter import Owner
from lipika.billing.models import Hold
from lipika.billing.policy import Outcome
from lipika.billing.pricebook import cost_of
from lipika.billing.resolvers import Capture, HoldResolvers, Later, Release, Resolution
from lipika.db import utcnow
from lipika.errors import BadRequest, ServiceUnavailable
from lipika.jobs.errors import JobFinished, JobNotFound, ShuttingDown
from lipika.jobs.models import Job, JobStatus
from lipika.jobs.repository import JobRepository
from lipika.jobs.runner import JobRunner
from lipika.jobs.schemas import JobError, JobOut, JobOutput, JobPage
from lipika.workspaces.models import Role

JOB_OWNER = "job"
# A job's hold outlives its deadline by this (and two leases), so the ordinary expiry pass
# never reaches the hold of a job that is still being watched.
HOLD_MARGIN = timedelta(minutes=5)


class JobService:
    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self.sessionmaker = runner.sessionmaker
        self.meter = runner.meter

    async def submit(
        self,
        me: Principal,
        kind_name: str,
        params: Mapping[str, Any],
        idempotency_key: str | None,
        *,
        thread_id: uuid.UUID | None = None,
    ) -> Job:
        """Admits the job's hold and starts it here; the same key returns the same job."""
        if self.runner.closing:
            raise ShuttingDown("this server is shutting down; retry (another takes the job)")
        kind = self.runner.kinds[kind_name]
        admission = kind.admission(params, self.meter.price_book)
        if not kind.serves(admission.provider):
            raise ServiceUnavailable(
                f"{admission.model} is not configured on this server",
                code="provider_not_configured",
            )
        if idempotency_key is not None:
            existing = await self._by_key(me.workspace_id, idempotency_key)
            if existing is not None:
                return existing
        price = self.meter.price_book.get(admission.price)
        assert price is not None
        now = utcnow()
        job = Job(
            id=uuid.uuid4(),
            created_at=now,
            updated_at=now,
            workspace_id=me.workspace_id,
            user_id=me.user_id,
            kind=kind.name,
            provider=admission.provider,
            model=admission.model,
            status=JobStatus.QUEUED,
            params=dict(admission.params),
            idempotency_key=idempotency_key,
            thread_id=thread_id,
            price=price.name,
            rates=dict(price.rates),
            max_usage=dict(admission.max_usage),
            lease_owner=self.runner.owner,
            lease_expires_at=now + self.runner.lease,
            attempts=1,
            deadline=now + kind.deadline,
            progress=0,
        )
        async with self.sessionmaker.begin() as session:
            inserted = await JobRepository(session).insert(job)
        if inserted is None:  # a concurrent submit with the same key won
            assert idempotency_key is not None
            existing = await self._by_key(me.workspace_id, idempotency_key)
            if existing is None:
                raise JobNotFound()
            return existing
        try:
            ticket = await self.meter.admit(
                me.workspace_id,
                me.user_id,
                operation=f"job.{kind.name}",
                price=price.name,
                max_usage=admission.max_usage,
                owner=Owner(JOB_OWNER, str(job.id)),
                ttl=kind.deadline + 2 * self.runner.lease + HOLD_MARGIN,
            )
        except BaseException:
            async with self.sessionmaker.begin() as session:
                await JobRepository(session).delete(job.id)
            raise
        values = {
            "hold_id": ticket.hold_id,
            "rates": dict(ticket.rates),
            "status": JobStatus.RUNNING,
        }
        async with self.sessionmaker.begin() as session:
            await JobRepository(session).update(job.id, values)
        job.hold_id, job.rates, job.status = ticket.hold_id, dict(ticket.rates), JobStatus.RUNNING
        self.runner.launch(job.id)
        return job

    async def get(self, me: Principal, job_id: uuid.UUID) -> Job:
        async with self.sessionmaker() as session:
            job = await JobRepository(session).get(job_id, me.workspace_id)
        if job is None or not _visible(job, me):
            raise JobNotFound()
        return job

    async def page(
        self,
        me: Principal,
        *,
        limit: int,
        cursor: str | None,
        kind: str | None,
        status: JobStatus | None,
    ) -> JobPage:
        async with self.sessionmaker() as session:
            jobs = await JobRepository(session).page(
                me.workspace_id,
                limit=limit + 1,
                after=decode_cursor(cursor) if cursor else None,
                kind=kind,
                status=status,
                user_id=None if me.role.at_least(Role.ADMIN) else me.user_id,
            )
        has_more = len(jobs) > limit
        jobs = jobs[:limit]
        return JobPage(
            data=[await self.out(job) for job in jobs],
            next_cursor=encode_cursor(jobs[-1]) if has_more and jobs else None,
        )

    async def cancel(self, me: Principal, job_id: uuid.UUID) -> Job:
        """Cancels a live job, free (see the charge policy); a job that ended is a 409."""
        job = await self.get(me, job_id)
        written = 0
        async with self.sessionmaker.begin() as session:
            cancelled = await JobRepository(session).cancel(job.id, me.workspace_id)
            if cancelled is not None:
                written = await self.runner.finished(
                    session, cancelled, {"status": JobStatus.CANCELLED, "outcome": "job_cancelled"}
                )
        if cancelled is not None and written and self.runner.notified is not None:
            self.runner.notified()
        if cancelled is None:
            raise JobFinished(f"the job has already {(await self.get(me, job_id)).status.value}")
        await self.runner.stop(job.id)
        if cancelled.hold_id is not None:
            settlement = await self.meter.settle(
                cancelled.hold_id, Outcome.JOB_CANCELLED, price=cancelled.price
            )
            values = {"charged": settlement.charged, "outcome": Outcome.JOB_CANCELLED.value}
            async with self.sessionmaker.begin() as session:
                await JobRepository(session).update(job.id, values)
        kind = self.runner.kinds.get(job.kind)
        if kind is not None and kind.serves(job.provider):
            try:
                await kind.cancel(cancelled)
            except Exception:  # noqa: BLE001, S110 - best effort: the provider may finish anyway
                pass
        await self.runner.events.publish(job.id, {"type": "finished"})
        await self.runner.tell_thread(job.id)
        return await self.get(me, job_id)

    async def out(self, job: Job) -> JobOut:
        progress = job.progress
        if not job.status.terminal:
            live = await self.runner.events.last_progress(job.id)
            progress = live if live is not None else progress
        error = (
            JobError(code=job.error_code, message=job.error_message or "")
            if job.error_code
            else None
        )
        return JobOut(
            id=job.id,
            kind=job.kind,
            model=job.model,
            status=job.status,
            progress=progress,
            params=_public_params(job.params),
            created_at=job.created_at,
            updated_at=job.updated_at,
            finished_at=job.finished_at,
            deadline=job.deadline,
            attempts=job.attempts,
            outcome=job.outcome,
            credits_held=cost_of(job.rates, job.max_usage) if job.hold_id else None,
            credits_charged=job.charged,
            usage=job.usage,
            outputs=[
                JobOutput(index=r["index"], content_type=r["content_type"], bytes=r["bytes"])
                for r in job.result or []
            ],
            error=error,
        )

    async def _by_key(self, workspace_id: uuid.UUID, key: str) -> Job | None:
        async with self.sessionmaker() as session:
            return await JobRepository(session).by_key(workspace_id, key)


def _visible(job: Job, me: Principal) -> bool:
    """A job is its submitter's; the workspace's admins and owners see every job."""
    return job.user_id == me.user_id or me.role.at_least(Role.ADMIN)


def _public_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as submitted, less a first frame's bytes."""
    shown = dict(params)
    if isinstance(shown.get("first_frame"), dict):
        shown["first_frame"] = {"mime_type": shown["first_frame"].get("mime_type")}
    return shown


def encode_cursor(job: Job) -> str:
    raw = orjson.dumps([job.created_at.isoformat(), str(job.id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, job_id = orjson.loads(raw)
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None:
            raise ValueError(moment)
        return parsed, uuid.UUID(job_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadRequest("not a cursor from this list", code="invalid_cursor") from None


def register_job_holds(resolvers: HoldResolvers, runner: JobRunner) -> None:
    """Tells reconciliation about job holds (asked only once a hold passed its expiry, which
    is beyond the job's deadline): a live job under a lease is left alone; a job whose
    provider finished and whose usage was recorded is captured (its process died between the
    two writes); anything else is released under the job's outcome."""

    async def resolve(hold: Hold) -> Resolution:
        try:
            job_id = uuid.UUID(hold.owner_id or "")
        except ValueError:
            return Release(Outcome.ABANDONED)
        async with runner.sessionmaker() as session:
            job = await JobRepository(session).get(job_id)
        if job is None:
            return Release(Outcome.ABANDONED)
        if not job.status.terminal:
            return Later()
        if job.status is JobStatus.SUCCEEDED and job.usage is not None:
            return Capture(job.usage)
        try:
            outcome = Outcome(job.outcome) if job.outcome else Outcome.ABANDONED
        except ValueError:
            outcome = Outcome.ABANDONED
        if outcome is Outcome.SUCCESS:
            outcome = Outcome.ABANDONED
        return Release(outcome)

    resolvers.register(JOB_OWNER, resolve)
