"""The runtime behind the API: adoption of a dead process's jobs (once, however many adopt),
resume by polling the stored operation, deadlines, reconciliation of a job's hold, and the
hand-off at shutdown."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from lipika.billing.models import HoldStatus
from lipika.billing.tasks import Reconciler
from lipika.db import utcnow
from lipika.jobs.models import Job, JobStatus
from lipika.jobs.runner import JobRunner
from lipika.kit.tasks import cancel_and_wait
from tests.jobs.conftest import Jobs

pytestmark = pytest.mark.usefixtures("backend")

CREDIT = 1_000_000


async def _kill(runner: JobRunner, job_id: str) -> None:
    """What a SIGKILL leaves: the task gone, the lease still naming the dead process."""
    task = runner.task_of(uuid.UUID(job_id))
    assert task is not None
    await cancel_and_wait(task)


async def _operation_stored(jobs: Jobs, job_id: str) -> Job:
    async with asyncio.timeout(5):
        while (row := await jobs.row(job_id)).operation_id is None:
            await asyncio.sleep(0.02)
    return row


async def test_a_dead_processs_job_is_adopted_resumed_and_charged_once(
    jobs: Jobs, other_runner, signup, books
) -> None:
    me = await signup("adopt")
    job = (await jobs.submit_video(me.headers, seconds=4)).json()
    stored = await _operation_stored(jobs, job["id"])
    await _kill(jobs.runner, job["id"])

    other = other_runner()
    assert (await other.adopt()).adopted == 0  # the lease is still live: nobody takes it
    await jobs.expire_lease(job["id"])
    assert (await other.adopt()).adopted == 1
    done = await jobs.wait(job["id"], me.headers)
    row = await jobs.row(job["id"])
    assert done["status"] == "succeeded" and done["credits_charged"] == 4 * CREDIT
    assert row.operation_id == stored.operation_id  # resumed by polling, never resubmitted
    assert row.attempts == 2 and row.lease_owner == other.owner
    holds = await books.holds(uuid.UUID(me.personal_workspace_id))
    assert [(h.status, h.captured) for h in holds] == [(HoldStatus.CAPTURED, 4 * CREDIT)]
    await books.assert_balanced()


async def test_two_adopters_at_once_adopt_each_job_once(
    jobs: Jobs, other_runner, signup, books
) -> None:
    me = await signup("race")
    ids = [(await jobs.submit_video(me.headers, seconds=2)).json()["id"] for _ in range(6)]
    for job_id in ids:
        await _operation_stored(jobs, job_id)
        await _kill(jobs.runner, job_id)
        await jobs.expire_lease(job_id)
    first, second = other_runner(), other_runner()
    reports = await asyncio.gather(first.adopt(), second.adopt(), jobs.runner.adopt())
    assert sum(r.adopted for r in reports) == 6
    for job_id in ids:
        done = await jobs.wait(job_id, me.headers)
        assert done["status"] == "succeeded" and done["attempts"] == 2
    holds = await books.holds(uuid.UUID(me.personal_workspace_id))
    assert sorted(h.captured for h in holds) == [2 * CREDIT] * 6
    await books.assert_balanced()


async def test_a_job_past_its_deadline_fails_free_and_keeps_a_late_result(
    jobs: Jobs, signup, books, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = await signup("late")
    workspace = uuid.UUID(me.personal_workspace_id)
    before = await books.state(workspace)
    monkeypatch.setattr(jobs.runner.kinds["video"], "deadline", timedelta(seconds=0.15))
    job = (await jobs.submit_video(me.headers, seconds=3)).json()
    failed = await jobs.wait(job["id"], me.headers)
    assert failed["status"] == "failed" and failed["error"]["code"] == "deadline_exceeded"
    assert failed["credits_charged"] == 0 and failed["outcome"] == "provider_timeout"
    # The demo finishes after its deadline: the result is kept, and nothing is charged.
    async with asyncio.timeout(5):
        while (late := await jobs.row(job["id"])).outcome != "job_finished_after_deadline":
            await asyncio.sleep(0.05)
    assert late.status is JobStatus.FAILED and late.result and late.charged == 0
    content = await jobs.client.get(f"/v1/jobs/{job['id']}/content", headers=me.headers)
    assert content.status_code == 200 and b"demo video" in content.content
    after = await books.state(workspace)
    assert after.balance == before.balance and after.held == 0
    await books.assert_balanced()


async def test_a_job_adopted_after_its_deadline_that_had_finished_is_free(
    jobs: Jobs, other_runner, signup, books
) -> None:
    me = await signup("deadpod")
    workspace = uuid.UUID(me.personal_workspace_id)
    before = await books.state(workspace)
    job = (await jobs.submit_video(me.headers, seconds=2)).json()
    await _operation_stored(jobs, job["id"])
    await _kill(jobs.runner, job["id"])
    await asyncio.sleep(0.5)  # the demo finishes while nobody runs the job
    async with jobs.runner.sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(job["id"]))
            .values(deadline=utcnow() - timedelta(seconds=1), lease_expires_at=utcnow())
        )
    assert (await other_runner().adopt()).adopted == 1
    done = await jobs.wait(job["id"], me.headers)
    assert done["status"] == "failed" and done["outcome"] == "job_finished_after_deadline"
    assert done["outputs"] and done["credits_charged"] == 0
    assert (await books.state(workspace)).balance == before.balance
    await books.assert_balanced()


async def test_reconciliation_captures_a_job_whose_process_died_after_it_finished(
    jobs: Jobs, signup, books, sessionmaker
) -> None:
    me = await signup("resolver")
    job = (await jobs.submit_video(me.headers, seconds=3)).json()
    await _operation_stored(jobs, job["id"])
    await _kill(jobs.runner, job["id"])
    row = await jobs.row(job["id"])
    # The provider's result was recorded, then the process died before the capture.
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.id == row.id)
            .values(status=JobStatus.SUCCEEDED, usage={"video_seconds.720p": 3}, outcome="success")
        )
    reconciler = Reconciler(jobs.runner.meter, sessionmaker)  # the app's meter and resolvers
    hold = await books.hold(row.hold_id)
    await reconciler.expire_holds(hold.expires_at + timedelta(seconds=1))
    settled = await books.hold(row.hold_id)
    assert settled.status is HoldStatus.CAPTURED and settled.captured == 3 * CREDIT
    await books.assert_balanced()


async def test_reconciliation_leaves_a_live_jobs_hold_alone(
    jobs: Jobs, signup, books, sessionmaker
) -> None:
    me = await signup("livehold")
    job = (await jobs.submit_video(me.headers, seconds=2)).json()
    row = await jobs.row(job["id"])
    reconciler = Reconciler(jobs.runner.meter, sessionmaker)
    hold = await books.hold(row.hold_id)
    await reconciler.expire_holds(hold.expires_at + timedelta(seconds=1))
    assert (await books.hold(row.hold_id)).status is HoldStatus.OPEN
    done = await jobs.wait(job["id"], me.headers)
    assert done["credits_charged"] == 2 * CREDIT
    await books.assert_balanced()


async def test_shutdown_gives_leases_up_and_another_process_adopts_at_once(
    jobs: Jobs, other_runner, signup, books
) -> None:
    me = await signup("handoff")
    stopping = other_runner()
    service_job = await jobs.submit_video(me.headers, seconds=2)
    job_id = service_job.json()["id"]
    await _operation_stored(jobs, job_id)
    # Move the job to the stopping process, as if it had accepted it.
    await _kill(jobs.runner, job_id)
    async with jobs.runner.sessionmaker.begin() as session:
        await session.execute(
            update(Job).where(Job.id == uuid.UUID(job_id)).values(lease_owner=stopping.owner)
        )
    stopping.launch(uuid.UUID(job_id))
    await asyncio.sleep(0.05)
    await stopping.aclose()  # the app's runner listens for hand-offs, as another pod does
    row = await jobs.row(job_id)
    async with asyncio.timeout(5):  # adopted well before the 30 s lease would expire
        while row.lease_owner != jobs.runner.owner:
            await asyncio.sleep(0.05)
            row = await jobs.row(job_id)
    done = await jobs.wait(job_id, me.headers)
    assert done["status"] == "succeeded" and done["credits_charged"] == 2 * CREDIT
    await books.assert_balanced()
