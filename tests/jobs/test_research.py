"""Deep research jobs through the real Valyu client against the fake Valyu server (real HTTP),
and through the demo provider: held at the mode's most, charged the task's reported cost,
every failure free, plans gating the modes, the audit balanced after each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import orjson
import pytest

from lipika.providers.research import DEMO_COST_USD
from lipika.providers.valyu import ValyuResearch
from tests.fixtures.fakes.valyu import ValyuFake
from tests.jobs.conftest import Jobs

pytestmark = pytest.mark.usefixtures("backend")

CREDIT = 1_000_000
FAST_HOLD = 15_625_000  # research.fast: 15.625 credits a task
STANDARD_HOLD = 62_500_000


@pytest.fixture
def research(jobs: Jobs, monkeypatch: pytest.MonkeyPatch):
    kind = jobs.runner.kinds["research"]
    monkeypatch.setattr(kind, "poll_seconds", 0.02)
    monkeypatch.setattr(kind.providers["demo"], "step_seconds", 0.02)  # type: ignore[attr-defined]
    return kind


@pytest.fixture
async def valyu(research, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ValyuFake]:
    fake = await ValyuFake().start()
    provider = ValyuResearch(fake.api_key, fake.base_url, timeout_seconds=5)
    monkeypatch.setitem(research.providers, "valyu", provider)
    try:
        yield fake
    finally:
        await provider.aclose()
        await fake.stop()


async def submit(jobs: Jobs, headers: dict[str, str], query: str, mode: str):
    return await jobs.client.post(
        "/v1/jobs",
        json={"kind": "research", "params": {"query": query, "mode": mode}},
        headers=headers,
    )


async def paying(signup, books):
    me = await signup("research")
    workspace = uuid.UUID(me.personal_workspace_id)
    await books.assign_plan(workspace, "pro")
    return me, workspace


async def test_a_task_is_held_at_its_modes_most_and_charged_its_reported_cost(
    jobs: Jobs, valyu: ValyuFake, signup, books
) -> None:
    me, workspace = await paying(signup, books)
    before = await books.state(workspace)
    job = await submit(jobs, me.headers, "[[research steps=3 cost=0.4321]] Tides", "standard")
    assert job.status_code == 202, job.text
    assert job.json()["credits_held"] == STANDARD_HOLD
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "succeeded", done
    # $0.4321 at 100 credits a dollar
    assert done["usage"] == {"provider_usd_micros": 432_100}
    assert done["credits_charged"] == 43_210_000
    after = await books.state(workspace)
    assert before.balance - after.balance == 43_210_000 and after.held == 0
    report = await jobs.client.get(f"/v1/jobs/{done['id']}/content", headers=me.headers)
    assert report.status_code == 200 and "Tides" in report.text
    assert report.headers["content-type"].startswith("text/markdown")
    sources = await jobs.client.get(
        f"/v1/jobs/{done['id']}/content", params={"index": 1}, headers=me.headers
    )
    assert [s["url"] for s in orjson.loads(sources.content)["sources"]] == [
        f"https://example.org/{i}" for i in (1, 2, 3)
    ]
    [task] = valyu.tasks.values()
    assert task.mode == "standard"
    await books.assert_balanced()


async def test_a_cost_above_the_hold_is_charged_the_hold(
    jobs: Jobs, valyu: ValyuFake, signup, books
) -> None:
    me, _ = await paying(signup, books)
    job = await submit(jobs, me.headers, "[[research steps=1 cost=9.99]] q", "fast")
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "succeeded" and done["credits_charged"] == FAST_HOLD
    await books.assert_balanced()


@pytest.mark.parametrize(
    ("script", "code"),
    [("fail=at_create", "provider_rejected_request"), ("fail=running", "research_failed")],
)
async def test_a_task_refused_or_failing_costs_nothing(
    jobs: Jobs, valyu: ValyuFake, signup, books, script: str, code: str
) -> None:
    me, workspace = await paying(signup, books)
    before = await books.state(workspace)
    job = await submit(jobs, me.headers, f"[[research steps=2 {script}]] q", "fast")
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "failed" and done["credits_charged"] == 0, done
    assert done["error"]["code"] == code
    assert (await books.state(workspace)).balance == before.balance
    await books.assert_balanced()


async def test_a_cancelled_task_is_stopped_at_the_provider_and_costs_nothing(
    jobs: Jobs, valyu: ValyuFake, signup, books
) -> None:
    me, _ = await paying(signup, books)
    job = await submit(jobs, me.headers, "[[research fail=never]] q", "heavy")
    job_id = job.json()["id"]
    for _ in range(200):  # until the task exists at the provider
        if valyu.tasks:
            break
        await jobs.client.get(f"/v1/jobs/{job_id}", headers=me.headers)
    cancelled = await jobs.client.post(f"/v1/jobs/{job_id}/cancel", headers=me.headers)
    assert cancelled.status_code == 200, cancelled.text
    done = await jobs.wait(job_id, me.headers)
    assert done["status"] == "cancelled" and done["credits_charged"] == 0
    assert valyu.cancels == list(valyu.tasks)
    await books.assert_balanced()


async def test_a_task_past_its_deadline_is_failed_and_free(
    jobs: Jobs, valyu: ValyuFake, research, signup, books, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(research, "deadline", timedelta(seconds=0.3))
    me, _ = await paying(signup, books)
    job = await submit(jobs, me.headers, "[[research fail=never]] q", "fast")
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "failed" and done["credits_charged"] == 0
    await books.assert_balanced()


async def test_the_free_plan_gets_the_fast_mode_and_the_demo_only(
    jobs: Jobs, valyu: ValyuFake, signup, books
) -> None:
    me = await signup("free-research")
    refused = await submit(jobs, me.headers, "q", "heavy")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "sku_not_in_plan"
    for mode in ("fast", "demo"):
        accepted = await submit(jobs, me.headers, "[[research steps=1]] q", mode)
        assert accepted.status_code == 202, accepted.text
        done = await jobs.wait(accepted.json()["id"], me.headers)
        assert done["status"] == "succeeded", done
    assert len(valyu.tasks) == 1


async def test_bad_parameters_are_named(jobs: Jobs, research, signup) -> None:
    me = await signup("bad-research")
    for params, param in (
        ({"query": "", "mode": "fast"}, "params.query"),
        ({"query": "   ", "mode": "demo"}, "params.query"),
        ({"query": "q", "mode": "turbo"}, "params.mode"),
        ({"query": "q" * 25_001}, "params.query"),
        ({"query": "q", "urls": ["not a url"]}, "params.urls.0"),
        ({"query": "q", "colour": "red"}, "params.colour"),
    ):
        answer = await jobs.client.post(
            "/v1/jobs", json={"kind": "research", "params": params}, headers=me.headers
        )
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["error"]["param"] == param, answer.text


async def test_valyu_not_configured_is_a_clear_503(jobs: Jobs, research, signup, books) -> None:
    me, _ = await paying(signup, books)
    answer = await submit(jobs, me.headers, "q", "standard")
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "provider_not_configured"


async def test_the_demo_task_runs_the_whole_flow_without_a_key(
    jobs: Jobs, research, signup, books
) -> None:
    me = await signup("demo-research")
    workspace = uuid.UUID(me.personal_workspace_id)
    before = await books.state(workspace)
    job = await submit(jobs, me.headers, "Why is the sea salty?", "demo")
    assert job.status_code == 202, job.text
    assert job.json()["credits_held"] == CREDIT
    done = await jobs.wait(job.json()["id"], me.headers)
    assert done["status"] == "succeeded", done
    expected = int(DEMO_COST_USD * 10 * CREDIT)  # 10 credits a dollar
    assert done["credits_charged"] == expected
    assert before.balance - (await books.state(workspace)).balance == expected
    report = await jobs.client.get(f"/v1/jobs/{done['id']}/content", headers=me.headers)
    assert "Demo report" in report.text
    await books.assert_balanced()
