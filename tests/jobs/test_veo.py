"""Veo through the real client code (providers/veo.py) against a fake Gemini video server over
real HTTP: success charged exactly (seconds x the resolution's rate), every failure free (rejected
at submit, failed while running, filtered, never finishing, finishing after the deadline), the
audit balanced after each."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from lipika.billing.models import HoldStatus
from lipika.providers.veo import VeoProvider
from lipika.providers.xai_video import XAIVideoProvider
from tests.fixtures.fakes.veo import MP4_HEADER, VeoFake
from tests.fixtures.fakes.xai_video import MP4 as XAI_MP4
from tests.fixtures.fakes.xai_video import XAIVideoFake
from tests.jobs.conftest import Jobs

pytestmark = pytest.mark.usefixtures("backend")

CREDIT = 1_000_000
MODEL = "veo-3.1-generate-preview"  # 40 credits a second at 720p and 1080p, 60 at 4k


@pytest.fixture
async def veo(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VeoFake]:
    fake = VeoFake("AIzaFakeVeo0123456789")
    await fake.start()
    provider = VeoProvider(fake.api_key, fake.base_url, timeout=5)
    monkeypatch.setitem(jobs.runner.kinds["video"].providers, "gemini", provider)
    try:
        yield fake
    finally:
        await provider.aclose()
        await fake.stop()


async def _paying(signup, books):
    me = await signup("veo")
    workspace = uuid.UUID(me.personal_workspace_id)
    await books.assign_plan(workspace, "pro")
    return me, workspace


async def test_a_veo_video_is_charged_its_seconds_at_its_resolution(
    jobs: Jobs, veo: VeoFake, signup, books
) -> None:
    me, workspace = await _paying(signup, books)
    before = await books.state(workspace)
    job = await jobs.submit_video(me.headers, model=MODEL, seconds=6, resolution="4k")
    assert job.status_code == 202, job.text
    assert job.json()["credits_held"] == 6 * 60 * CREDIT
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "succeeded", done
    assert done["credits_charged"] == 6 * 60 * CREDIT and done["usage"] == {"video_seconds.4k": 6}
    content = await jobs.client.get(f"/v1/jobs/{done['id']}/content", headers=me.headers)
    assert content.headers["content-type"] == "video/mp4" and content.content.startswith(MP4_HEADER)
    assert veo.submits == 1 and veo.downloads == 1
    assert before.balance - (await books.state(workspace)).balance == 6 * 60 * CREDIT
    await books.assert_balanced()


@pytest.mark.parametrize(
    ("directive", "seconds", "code", "outcome"),
    [
        ("[[veo reject=1]]", 8, "provider_rejected_request", "refused_by_provider"),
        ("", 5, "provider_rejected_request", "refused_by_provider"),  # Veo makes 4, 6 or 8 s
        ("[[veo fail=1]]", 8, "provider_error", "provider_error_before_output"),
        ("[[veo filter=1]]", 8, "content_filtered", "refused_by_provider"),
    ],
)
async def test_every_veo_failure_is_free(
    jobs: Jobs, veo: VeoFake, signup, books, directive: str, seconds: int, code: str, outcome: str
) -> None:
    me, workspace = await _paying(signup, books)
    before = await books.state(workspace)
    job = await jobs.submit_video(
        me.headers, model=MODEL, seconds=seconds, prompt=f"a storm {directive}"
    )
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == code and done["outcome"] == outcome
    assert done["credits_charged"] == 0 and done["outputs"] == []
    after = await books.state(workspace)
    assert after.balance == before.balance and after.held == 0
    [hold] = await books.holds(workspace)
    assert hold.status is HoldStatus.RELEASED
    await books.assert_balanced()


async def test_a_slow_and_flaky_operation_is_polled_until_done_and_charged_once(
    jobs: Jobs, veo: VeoFake, signup, books
) -> None:
    me, workspace = await _paying(signup, books)
    job = await jobs.submit_video(
        me.headers, model=MODEL, seconds=4, prompt="waves [[veo work=0.6 flaky=3]]"
    )
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "succeeded" and done["credits_charged"] == 4 * 40 * CREDIT
    [operation] = veo.operations.values()
    assert operation.polls > 4  # three 503s, then running, then done
    assert veo.submits == 1
    await books.assert_balanced()


async def test_an_operation_that_never_finishes_fails_at_the_deadline_free(
    jobs: Jobs, veo: VeoFake, signup, books, monkeypatch: pytest.MonkeyPatch
) -> None:
    me, workspace = await _paying(signup, books)
    before = await books.state(workspace)
    monkeypatch.setattr(jobs.runner.kinds["video"], "deadline", timedelta(seconds=0.3))
    monkeypatch.setattr(jobs.runner, "late_watch", timedelta(seconds=0.3))
    job = await jobs.submit_video(me.headers, model=MODEL, prompt="forever [[veo never=1]]")
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "failed" and done["error"]["code"] == "deadline_exceeded"
    assert done["outcome"] == "provider_timeout" and done["credits_charged"] == 0
    await asyncio.sleep(0.5)  # the late watch gives up; nothing arrives
    row = await jobs.row(done["id"])
    assert row.result is None and row.outcome == "provider_timeout"
    assert (await books.state(workspace)).balance == before.balance
    await books.assert_balanced()


async def test_an_operation_finishing_after_the_deadline_keeps_its_result_free(
    jobs: Jobs, veo: VeoFake, signup, books, monkeypatch: pytest.MonkeyPatch
) -> None:
    me, workspace = await _paying(signup, books)
    before = await books.state(workspace)
    monkeypatch.setattr(jobs.runner.kinds["video"], "deadline", timedelta(seconds=0.2))
    job = await jobs.submit_video(me.headers, model=MODEL, prompt="late [[veo work=0.5]]")
    failed = await jobs.wait(job.json()["id"], me.headers)
    assert failed["status"] == "failed" and failed["credits_charged"] == 0
    async with asyncio.timeout(5):
        while (row := await jobs.row(failed["id"])).outcome != "job_finished_after_deadline":
            await asyncio.sleep(0.05)
    assert row.result and veo.downloads == 1
    content = await jobs.client.get(f"/v1/jobs/{failed['id']}/content", headers=me.headers)
    assert content.content.startswith(MP4_HEADER)
    assert (await books.state(workspace)).balance == before.balance
    await books.assert_balanced()


async def test_a_wrong_key_fails_the_job_free(
    jobs: Jobs, veo: VeoFake, signup, books, monkeypatch
) -> None:
    me, workspace = await _paying(signup, books)
    wrong = VeoProvider("AIzaWrong", veo.base_url, timeout=5)
    monkeypatch.setitem(jobs.runner.kinds["video"].providers, "gemini", wrong)
    try:
        job = await jobs.submit_video(me.headers, model=MODEL)
        done = await jobs.wait(job.json()["id"], me.headers)
    finally:
        await wrong.aclose()
    assert done["status"] == "failed" and done["credits_charged"] == 0
    await books.assert_balanced()


async def test_the_free_plan_is_refused_veo_before_any_provider_call(
    jobs: Jobs, veo: VeoFake, signup, books
) -> None:
    me = await signup("freeveo")
    refused = await jobs.submit_video(me.headers, model=MODEL)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["details"]["kind"] == "video"
    assert veo.submits == 0
    assert await books.holds(uuid.UUID(me.personal_workspace_id)) == []
    assert (await jobs.client.get("/v1/jobs", headers=me.headers)).json()["data"] == []


@pytest.fixture
async def grok_video(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[XAIVideoFake]:
    fake = XAIVideoFake("xai-fake-video-0123")
    await fake.start()
    provider = XAIVideoProvider(fake.api_key, fake.base_url, timeout=5)
    monkeypatch.setitem(jobs.runner.kinds["video"].providers, "xai", provider)
    try:
        yield fake
    finally:
        await provider.aclose()
        await fake.stop()


async def test_a_grok_video_is_charged_the_seconds_it_reports(
    jobs: Jobs, grok_video: XAIVideoFake, signup, books
) -> None:
    me, workspace = await _paying(signup, books)
    before = await books.state(workspace)
    job = await jobs.submit_video(
        me.headers, model="grok-imagine-video", seconds=5, resolution="480p"
    )
    assert job.status_code == 202, job.text
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "succeeded" and done["usage"] == {"video_seconds.480p": 5}
    assert done["credits_charged"] == 5 * 5 * CREDIT
    content = await jobs.client.get(f"/v1/jobs/{done['id']}/content", headers=me.headers)
    assert content.content == XAI_MP4  # fetched from the storage host without the key
    assert before.balance - (await books.state(workspace)).balance == 25 * CREDIT
    await books.assert_balanced()


@pytest.mark.parametrize("directive", ["[[xv fail=1]]", "[[xv reject=1]]"])
async def test_grok_video_failures_are_free(
    jobs: Jobs, grok_video: XAIVideoFake, signup, books, directive: str
) -> None:
    me, workspace = await _paying(signup, books)
    before = await books.state(workspace)
    job = await jobs.submit_video(
        me.headers,
        model="grok-imagine-video",
        seconds=5,
        resolution="720p",
        prompt=f"x {directive}",
    )
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "failed" and done["credits_charged"] == 0
    assert (await books.state(workspace)).balance == before.balance
    await books.assert_balanced()
