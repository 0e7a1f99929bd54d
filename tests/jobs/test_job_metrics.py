"""The jobs' metrics and their invariant alarm: adoptions and finished jobs counted, live jobs
by kind and state, and "jobs running past their deadline" reported (and quiet when none is)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.db import utcnow
from lipika.jobs.models import Job, JobStatus
from lipika.ops.alarms import InvariantCheck
from lipika.ops.metrics import Metrics
from tests.jobs.conftest import Jobs
from tests.jobs.test_runtime import _kill, _operation_stored

pytestmark = pytest.mark.usefixtures("backend")

GRACE = timedelta(minutes=5)


def _samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_adoptions_and_finished_jobs_are_counted(
    jobs: Jobs, app: FastAPI, signup, books
) -> None:
    metrics = app.lifespan_state["metrics"]  # type: ignore[attr-defined]
    adopted_before = metrics.job_adoptions._value.get()
    finished = metrics.jobs_finished.labels("video", "succeeded")
    finished_before = finished._value.get()
    me = await signup("metrics")
    job = (await jobs.submit_video(me.headers, seconds=2)).json()
    await _operation_stored(jobs, job["id"])
    await _kill(jobs.runner, job["id"])
    await jobs.expire_lease(job["id"])
    assert (await jobs.runner.adopt()).adopted == 1
    await jobs.wait(job["id"], me.headers)
    assert metrics.job_adoptions._value.get() == adopted_before + 1
    assert finished._value.get() == finished_before + 1
    scraped = await jobs.client.get("/metrics")
    assert _samples(scraped.text, "lipika_job_adoptions_total")[()] == adopted_before + 1
    await books.assert_balanced()


async def test_a_job_running_past_its_deadline_is_reported(db_engine: AsyncEngine, books) -> None:
    check = InvariantCheck(db_engine, Metrics(), GRACE)
    workspace = await books.new_wallet()
    now = utcnow()
    job = Job(
        id=uuid.uuid4(),
        workspace_id=workspace,
        kind="video",
        provider="demo",
        model="demo",
        status=JobStatus.RUNNING,
        params={"prompt": "x"},
        price="video.demo",
        rates={"video_seconds.720p": 1},
        max_usage={"video_seconds.720p": 1},
        lease_owner="a-process-far-away",
        lease_expires_at=now + timedelta(days=1),  # nobody adopts it during the test
        attempts=1,
        deadline=now + timedelta(minutes=1),
        progress=0,
        created_at=now,
        updated_at=now,
    )
    async with books.sessionmaker.begin() as session:
        session.add(job)
    assert await check.run_once(now=job.deadline + GRACE / 2) == []
    assert check.metrics.jobs.labels("video", "running")._value.get() == 1
    [violation] = await check.run_once(now=job.deadline + GRACE * 2)
    assert violation.check == "jobs_past_deadline"
    assert violation.sample[0]["job_id"] == str(job.id)
    assert check.metrics.invariant_violations.labels("jobs_past_deadline")._value.get() == 1
