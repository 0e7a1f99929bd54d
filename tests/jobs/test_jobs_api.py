"""The jobs API on the demo providers: submit, follow, download, cancel, list, idempotency,
plans; each charged exactly as the charge policy says, the ledger balanced after each."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from lipika.billing.models import HoldStatus
from tests.jobs.conftest import Jobs

pytestmark = pytest.mark.usefixtures("backend")

CREDIT = 1_000_000


def _events(text: str) -> list[dict]:
    return [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def test_a_video_job_runs_streams_and_is_charged_its_seconds(
    jobs: Jobs, signup, books
) -> None:
    me = await signup("video")
    workspace = uuid.UUID(me.personal_workspace_id)
    before = await books.state(workspace)

    submitted = await jobs.submit_video(me.headers, seconds=6, resolution="720p")
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["status"] == "running" and job["kind"] == "video" and job["model"] == "demo"
    assert job["credits_held"] == 6 * CREDIT  # 6 s at 1 credit a second (the demo's 720p rate)

    async with jobs.client.stream(
        "GET", f"/v1/jobs/{job['id']}/events", headers=me.headers
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = _events((await stream.aread()).decode())
    assert events[0]["type"] == "status"
    assert events[-1]["type"] == "done", events
    assert events[-1]["job"]["status"] == "succeeded"
    assert all(e["type"] in ("status", "progress", "done") for e in events)

    done = await jobs.wait(job["id"], me.headers)
    assert done["credits_charged"] == 6 * CREDIT
    assert done["usage"] == {"video_seconds.720p": 6}
    assert done["outcome"] == "success"
    assert done["outputs"][0]["content_type"] == "image/svg+xml"

    content = await jobs.client.get(f"/v1/jobs/{job['id']}/content", headers=me.headers)
    assert content.status_code == 200
    assert content.headers["content-type"].startswith("image/svg+xml")
    assert b"Lipika demo video" in content.content and b'dur="6s"' in content.content
    missing = await jobs.client.get(f"/v1/jobs/{job['id']}/content?index=1", headers=me.headers)
    assert missing.status_code == 409 and missing.json()["error"]["code"] == "job_has_no_content"

    after = await books.state(workspace)
    assert before.balance - after.balance == 6 * CREDIT
    assert after.held == 0
    row = await jobs.row(job["id"])
    assert (await books.hold(row.hold_id)).status is HoldStatus.CAPTURED
    await books.assert_balanced()

    # A stream opened after the end says so at once.
    again = await jobs.client.get(f"/v1/jobs/{job['id']}/events", headers=me.headers)
    assert [e["type"] for e in _events(again.text)] == ["status", "done"]


async def test_an_idempotency_key_returns_the_same_job(jobs: Jobs, signup, books) -> None:
    me = await signup("idem")
    headers = {**me.headers, "Idempotency-Key": "video-1"}
    responses = await asyncio.gather(*(jobs.submit_video(headers) for _ in range(4)))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    done = await jobs.wait(responses[0].json()["id"], me.headers)
    assert done["credits_charged"] == 8 * CREDIT
    holds = await books.holds(uuid.UUID(me.personal_workspace_id))
    assert [h.status for h in holds] == [HoldStatus.CAPTURED]
    listed = (await jobs.client.get("/v1/jobs", headers=me.headers)).json()["data"]
    assert len(listed) == 1
    await books.assert_balanced()


async def test_cancel_is_free_and_once(jobs: Jobs, signup, books) -> None:
    me = await signup("cancel")
    workspace = uuid.UUID(me.personal_workspace_id)
    before = await books.state(workspace)
    job = (await jobs.submit_video(me.headers)).json()
    cancelled = await jobs.client.post(f"/v1/jobs/{job['id']}/cancel", headers=me.headers)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["credits_charged"] == 0
    assert body["outcome"] == "job_cancelled"
    again = await jobs.client.post(f"/v1/jobs/{job['id']}/cancel", headers=me.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    await asyncio.sleep(0.6)  # longer than the demo's work: the job must not come back
    final = (await jobs.client.get(f"/v1/jobs/{job['id']}", headers=me.headers)).json()
    assert final["status"] == "cancelled" and final["outputs"] == []
    after = await books.state(workspace)
    assert after.balance == before.balance and after.held == 0
    events = await jobs.client.get(f"/v1/jobs/{job['id']}/events", headers=me.headers)
    assert _events(events.text)[-1]["type"] == "error"
    assert _events(events.text)[-1]["error"]["code"] == "cancelled"
    await books.assert_balanced()


async def test_list_pages_with_a_cursor_and_filters(jobs: Jobs, signup, books) -> None:
    me = await signup("lister")
    ids = []
    for _ in range(3):
        ids.append((await jobs.submit_video(me.headers, seconds=2)).json()["id"])
    image = await jobs.client.post(
        "/v1/jobs", json={"kind": "image", "params": {"prompt": "a cat"}}, headers=me.headers
    )
    assert image.status_code == 202, image.text
    for job_id in [*ids, image.json()["id"]]:
        await jobs.wait(job_id, me.headers)
    first = (await jobs.client.get("/v1/jobs?limit=2", headers=me.headers)).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    second = (
        await jobs.client.get(f"/v1/jobs?limit=2&cursor={first['next_cursor']}", headers=me.headers)
    ).json()
    seen = [j["id"] for j in first["data"] + second["data"]]
    assert sorted(seen) == sorted([*ids, image.json()["id"]]) and second["next_cursor"] is None
    videos = (
        await jobs.client.get("/v1/jobs?kind=video&status=succeeded", headers=me.headers)
    ).json()
    assert sorted(j["id"] for j in videos["data"]) == sorted(ids)
    bad = await jobs.client.get("/v1/jobs?cursor=nonsense", headers=me.headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    await books.assert_balanced()


async def test_bad_jobs_are_typed_4xx_and_hold_nothing(jobs: Jobs, signup, books) -> None:
    me = await signup("bad")
    workspace = uuid.UUID(me.personal_workspace_id)
    cases = [
        ("/v1/videos", {"prompt": "x", "model": "no-such-model"}, 400, "model_not_found"),
        ("/v1/videos", {"prompt": ""}, 422, "validation_error"),
        ("/v1/videos", {"prompt": "x", "seconds": 0}, 422, "validation_error"),
        ("/v1/jobs", {"kind": "video", "params": {"prompt": 3}}, 400, "invalid_job"),
        ("/v1/jobs", {"kind": "video", "params": {"prompt": "x", "extra": 1}}, 400, "invalid_job"),
        ("/v1/jobs", {"kind": "sound", "params": {}}, 422, "validation_error"),
    ]
    for path, body, status, code in cases:
        response = await jobs.client.post(path, json=body, headers=me.headers)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    assert await books.holds(workspace) == []
    assert (
        await jobs.client.get(f"/v1/jobs/{uuid.uuid4()}", headers=me.headers)
    ).status_code == 404


async def test_the_free_plan_gets_the_demo_video_only(jobs: Jobs, signup, books) -> None:
    me = await signup("freeplan")
    workspace = uuid.UUID(me.personal_workspace_id)
    plan = books.meter.plans.get("free")
    book = books.meter.price_book
    assert plan is not None and plan.allows_price(book.get("video.demo"))
    assert not plan.allows_price(book.get("video.veo-3.1-generate-preview"))
    assert plan.allows_price(book.get("image.demo"))
    # Without a Gemini key the model is not served here at all: a 503 naming it, nothing held.
    refused = await jobs.submit_video(me.headers, model="veo-3.1-generate-preview")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "provider_not_configured"
    assert (await books.holds(workspace)) == []
    assert (await jobs.client.get("/v1/jobs", headers=me.headers)).json()["data"] == []


async def test_a_member_sees_only_their_jobs_and_admins_all(jobs: Jobs, team, books) -> None:
    workspace_id, people = await team()
    member, admin = people["member"], people["admin"]
    job = (await jobs.submit_video(member.in_workspace(workspace_id), seconds=2)).json()
    other = (await jobs.submit_video(admin.in_workspace(workspace_id), seconds=2)).json()
    assert (
        await jobs.client.get(f"/v1/jobs/{job['id']}", headers=admin.in_workspace(workspace_id))
    ).status_code == 200
    hidden = await jobs.client.get(
        f"/v1/jobs/{other['id']}", headers=member.in_workspace(workspace_id)
    )
    assert hidden.status_code == 404
    mine = (await jobs.client.get("/v1/jobs", headers=member.in_workspace(workspace_id))).json()[
        "data"
    ]
    assert [j["id"] for j in mine] == [job["id"]]
    for job_id in (job["id"], other["id"]):
        await jobs.wait(job_id, admin.in_workspace(workspace_id))
    await books.assert_balanced()
