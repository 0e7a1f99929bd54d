"""Builds the job runtime for the lifespan: the kinds with their providers, the runner, and
its periodic adoption and hold resolver."""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.billing.meter import Meter
from lipika.config import Settings
from lipika.jobs.events import JobEvents
from lipika.jobs.kinds.base import JobKind
from lipika.jobs.kinds.image import ImageKind
from lipika.jobs.kinds.video import VideoKind
from lipika.jobs.runner import JobObserver, JobRunner
from lipika.jobs.service import register_job_holds
from lipika.jobs.storage import OutputStore
from lipika.periodic import PeriodicTasks
from lipika.providers.registry import MediaProviders


def build_kinds(settings: Settings, media: MediaProviders) -> dict[str, JobKind]:
    kinds: list[JobKind] = [
        VideoKind(
            media.video,
            poll_seconds=settings.job_poll_seconds,
            deadline=timedelta(seconds=settings.video_job_deadline_seconds),
        ),
        ImageKind(media.image, deadline=timedelta(seconds=settings.image_job_deadline_seconds)),
    ]
    return {kind.name: kind for kind in kinds}


def build_runner(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    meter: Meter,
    redis: Redis,
    media: MediaProviders,
    observer: JobObserver | None = None,
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
    )
    register_job_holds(meter.resolvers, runner)
    return runner


def register_adoption(tasks: PeriodicTasks, runner: JobRunner) -> None:
    """The jobs domain's periodic work: adopting jobs whose process died."""
    tasks.register("jobs.adopt", runner.adopt)
