"""Builds the job runtime for the lifespan: the kinds with their providers, the runner, and
its periodic adoption and hold resolver."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from opentelemetry import trace
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.billing.meter import Meter
from lipika.config import Settings
from lipika.jobs.events import JobEvents
from lipika.jobs.kinds.base import JobKind
from lipika.jobs.kinds.image import ImageKind
from lipika.jobs.kinds.research import ResearchKind
from lipika.jobs.kinds.video import VideoKind
from lipika.jobs.models import Job
from lipika.jobs.runner import JobObserver, JobRunner
from lipika.jobs.service import register_job_holds
from lipika.jobs.storage import OutputStore
from lipika.periodic import PeriodicTasks
from lipika.providers.registry import MediaProviders
from lipika.webhooks.service import WebhookSender, enqueue


def build_kinds(settings: Settings, media: MediaProviders) -> dict[str, JobKind]:
    kinds: list[JobKind] = [
        VideoKind(
            media.video,
            poll_seconds=settings.job_poll_seconds,
            deadline=timedelta(seconds=settings.video_job_deadline_seconds),
        ),
        ImageKind(media.image, deadline=timedelta(seconds=settings.image_job_deadline_seconds)),
        ResearchKind(
            media.research,
            poll_seconds=settings.research_poll_seconds,
            deadline=timedelta(seconds=settings.research_job_deadline_seconds),
        ),
    ]
    return {kind.name: kind for kind in kinds}


def build_runner(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    meter: Meter,
    redis: Redis,
    media: MediaProviders,
    observer: JobObserver | None = None,
    webhooks: WebhookSender | None = None,
    tracer: trace.Tracer | None = None,
) -> JobRunner:
    runner = JobRunner(
        sessionmaker,
        meter,
        build_kinds(settings, media),
        JobEvents(redis, settings.redis_key_prefix),
        OutputStore.open(
            settings.output_store_url, settings.data_dir / "outputs", settings.output_store_options
        ),
        lease_seconds=settings.job_lease_seconds,
        late_watch_seconds=settings.job_late_watch_seconds,
        observer=observer,
        notify=_job_event if webhooks else None,
        notified=webhooks.soon if webhooks else None,
        tracer=tracer,
    )
    register_job_holds(meter.resolvers, runner)
    return runner


def register_adoption(tasks: PeriodicTasks, runner: JobRunner) -> None:
    """The jobs domain's periodic work: adopting jobs whose process died."""
    tasks.register("jobs.adopt", runner.adopt)


async def _job_event(session: AsyncSession, job: Job, values: Mapping[str, Any]) -> int:
    """`job.succeeded`, `job.failed` or `job.cancelled` for the workspace's webhooks."""
    status = str(values["status"])
    data = {
        "id": str(job.id),
        "object": "job",
        "kind": job.kind,
        "model": job.model,
        "status": status,
        "outcome": values.get("outcome"),
        "error": values.get("error_code"),
    }
    return await enqueue(session, job.workspace_id, f"job.{status}", data)
