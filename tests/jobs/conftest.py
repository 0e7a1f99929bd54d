"""Jobs on a compressed clock: the demo providers work for a fraction of a second and running
jobs are polled every few hundredths, on the session's app (restored after each test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from lipika.db import utcnow
from lipika.jobs.models import Job
from lipika.jobs.runner import JobRunner
from lipika.jobs.service import JobService
from tests.agent.conftest import checkpoint_saver  # noqa: F401  (the agent tools' tests)

DEMO_WORK_SECONDS = 0.4
POLL_SECONDS = 0.05


@pytest.fixture
def runner(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> JobRunner:
    runner: JobRunner = app.lifespan_state["jobs"]  # type: ignore[attr-defined]
    video = runner.kinds["video"]
    monkeypatch.setattr(video, "poll_seconds", POLL_SECONDS)
    monkeypatch.setattr(video.providers["demo"], "work_seconds", DEMO_WORK_SECONDS)  # type: ignore[attr-defined]
    monkeypatch.setattr(runner.kinds["image"].providers["demo"], "work_seconds", 0.05)  # type: ignore[attr-defined]
    return runner


@dataclass
class Jobs:
    client: httpx.AsyncClient
    runner: JobRunner

    async def submit_video(self, headers: dict[str, str], **params: object) -> httpx.Response:
        body = {"prompt": "a lighthouse at dusk", "seconds": 8, **params}
        return await self.client.post("/v1/videos", json=body, headers=headers)

    async def wait(self, job_id: str, headers: dict[str, str], timeout: float = 10) -> dict:
        """Polls the job until it has ended."""
        async with asyncio.timeout(timeout):
            while True:
                job = (await self.client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
                if (
                    job["status"] in ("succeeded", "failed", "cancelled")
                    and job["credits_charged"] is not None
                ):
                    return job
                await asyncio.sleep(0.05)

    async def row(self, job_id: str | uuid.UUID) -> Job:
        async with self.runner.sessionmaker() as session:
            job = await session.scalar(select(Job).where(Job.id == uuid.UUID(str(job_id))))
        assert job is not None
        return job

    async def expire_lease(self, job_id: str | uuid.UUID) -> None:
        async with self.runner.sessionmaker.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.id == uuid.UUID(str(job_id)))
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )


@pytest.fixture
async def jobs(client: httpx.AsyncClient, runner: JobRunner) -> AsyncIterator[Jobs]:
    yield Jobs(client, runner)
    for live in list(runner._live.values()):  # noqa: SLF001 - nothing runs into the next test
        live.task.cancel()
    await asyncio.sleep(0)


@pytest.fixture
async def other_runner(runner: JobRunner) -> AsyncIterator[Callable[[], JobRunner]]:
    """Another process's runner on the same databases (a second pod)."""
    made: list[JobRunner] = []

    def make() -> JobRunner:
        other = JobRunner(
            runner.sessionmaker,
            runner.meter,
            runner.kinds,
            runner.events,
            runner.store,
            lease_seconds=runner.lease.total_seconds(),
            late_watch_seconds=runner.late_watch.total_seconds(),
        )
        made.append(other)
        return other

    yield make
    for other in made:
        for live in list(other._live.values()):  # noqa: SLF001
            live.task.cancel()


def service(runner: JobRunner) -> JobService:
    return JobService(runner)
