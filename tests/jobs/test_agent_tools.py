"""The agent's media tools: `generate_image` waits for its job and returns the image's
reference; `generate_video` returns the job id at once, and when the job ends the thread's
history shows it. Each tool call is metered in its node; each image or video by its job."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lipika.agent.runner import Agent, RunRequest
from lipika.billing.models import HoldStatus
from lipika.jobs.agent import AgentJobs, thread_note
from tests.agent.conftest import of_type, run_all
from tests.agent.scripted import Reply, Script
from tests.jobs.conftest import Jobs

pytestmark = pytest.mark.usefixtures("backend")

CREDIT = 1_000_000


def _agent(settings, jobs: Jobs, saver, script: Script) -> Agent:
    """An agent of the tests' own (a scripted model) on the app's job runner."""
    return Agent(
        settings, jobs.runner.meter, saver, {"demo": script.provider()}, jobs=AgentJobs(jobs.runner)
    )


def _request(me, thread_id: uuid.UUID, content: str) -> RunRequest:
    return RunRequest(
        thread_id=thread_id,
        workspace_id=uuid.UUID(me.personal_workspace_id),
        user_id=uuid.UUID(me.user_id),
        content=content,
        model="demo",
    )


async def test_generate_image_waits_and_returns_the_reference(
    jobs: Jobs,
    settings,
    checkpoint_saver,
    signup,
    books,
) -> None:
    me = await signup("agentimg")
    script = Script(
        [
            Reply(tool_calls=[("generate_image", {"prompt": "a kite over a river"})]),
            Reply(text="Here it is"),
        ]
    )
    agent = _agent(settings, jobs, checkpoint_saver, script)
    assert {"generate_image", "generate_video"} <= set(agent.tools)
    events = await run_all(agent, _request(me, uuid.uuid4(), "Draw a kite"))
    [end] = of_type(events, "tool_end")
    assert end["tool"] == "generate_image" and end["status"] == "success", end
    assert "image ready: job " in end["output"]
    job_id = end["output"].split("job ")[1].split(",")[0]
    job = await jobs.row(job_id)
    assert job.kind == "image" and job.charged == CREDIT // 2  # the demo image: 0.5 credits
    content = await jobs.client.get(f"/v1/jobs/{job_id}/content", headers=me.headers)
    assert b"a kite over a river" in content.content
    holds = await books.holds(uuid.UUID(me.personal_workspace_id))
    by_price = sorted((h.model, h.status) for h in holds)
    assert ("agent.generate_image", HoldStatus.CAPTURED) in by_price
    assert ("image.demo", HoldStatus.CAPTURED) in by_price
    await books.assert_balanced()


async def test_generate_video_returns_at_once_and_the_thread_hears_the_end(
    jobs: Jobs,
    settings,
    checkpoint_saver,
    signup,
    books,
) -> None:
    me = await signup("agentvid")
    thread = uuid.uuid4()
    script = Script(
        [
            Reply(tool_calls=[("generate_video", {"prompt": "waves at night", "seconds": 3})]),
            Reply(text="Started your video"),
        ]
    )
    agent = _agent(settings, jobs, checkpoint_saver, script)
    previous = jobs.runner.thread_note
    jobs.runner.thread_note = thread_note(agent.note)  # this agent's threads, for the test
    try:
        events = await run_all(agent, _request(me, thread, "Make a video"))
        [end] = of_type(events, "tool_end")
        assert "video job " in end["output"] and end["status"] == "success"
        job_id = end["output"].split("video job ")[1].split(" ")[0]
        assert (await jobs.row(job_id)).status.value == "running"  # answered before it ended
        assert events[-1]["type"] == "done"
        await jobs.wait(job_id, me.headers)
        async with asyncio.timeout(5):
            while True:
                history = await agent.history(thread)
                if "is ready" in str(history[-1].content):
                    break
                await asyncio.sleep(0.05)
    finally:
        jobs.runner.thread_note = previous
    last = history[-1]
    assert last.type == "ai" and job_id in last.content
    assert last.response_metadata["job_status"] == "succeeded"
    assert (await jobs.row(job_id)).charged == 3 * CREDIT
    await books.assert_balanced()


async def test_a_refused_job_is_told_to_the_model_and_free(
    jobs: Jobs,
    settings,
    checkpoint_saver,
    signup,
    books,
) -> None:
    me = await signup("agentfree")
    script = Script(
        [
            Reply(
                tool_calls=[
                    ("generate_video", {"prompt": "x", "model": "veo-3.1-generate-preview"})
                ]
            ),
            Reply(text="Sorry"),
        ]
    )
    agent = _agent(settings, jobs, checkpoint_saver, script)
    events = await run_all(agent, _request(me, uuid.uuid4(), "Veo please"))
    [end] = of_type(events, "tool_end")
    assert end["status"] == "error" and end["credits_charged"] == 0
    assert (await jobs.client.get("/v1/jobs", headers=me.headers)).json()["data"] == []
    await books.assert_balanced()
