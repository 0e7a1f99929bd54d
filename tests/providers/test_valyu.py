"""The Valyu DeepResearch client against the fake Valyu server, over real HTTP: tasks that
finish, fail, are refused, rate-limited, cancelled; callbacks that are signed, forged, stale,
about another task, or sent twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp import web

from lipika.providers.errors import ProviderAuthFailed, ProviderRateLimited, ProviderRejected
from lipika.providers.research import ResearchStatus, ResearchTask
from lipika.providers.valyu import CallbackUnverified, ValyuResearch, parse_status, verify_callback
from tests.fixtures.fakes.valyu import HOST, ValyuFake


@pytest.fixture
async def valyu() -> AsyncIterator[ValyuFake]:
    fake = await ValyuFake().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def client(valyu: ValyuFake) -> AsyncIterator[ValyuResearch]:
    research = ValyuResearch(valyu.api_key, valyu.base_url, timeout_seconds=5)
    yield research
    await research.aclose()


class Receiver:
    """Where the fake delivers its callbacks: each (headers, body) as it arrived."""

    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await self.deliveries.put((dict(request.headers), await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.add_routes([web.post("/hook", receiver.handle)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    receiver.url = f"http://{HOST}:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    yield receiver
    await runner.cleanup()


async def until_ended(client: ValyuResearch, task_id: str) -> ResearchStatus:
    for _ in range(500):
        status = await client.status(task_id)
        assert status is not None
        if status.ended:
            return status
        await asyncio.sleep(0.01)
    raise AssertionError("the task never ended")


async def test_a_task_runs_to_its_report_with_progress_sources_and_cost(
    client: ValyuResearch,
) -> None:
    created = await client.create(
        ResearchTask("[[research steps=3 cost=0.625]] Why is the sky blue?", mode="standard")
    )
    assert created.webhook_secret is None  # no webhook URL, no secret
    seen_steps = set()
    status = None
    for _ in range(500):
        status = await client.status(created.id)
        assert status is not None
        seen_steps.add(status.step)
        if status.ended:
            break
        await asyncio.sleep(0.005)
    assert status is not None and status.state == "succeeded"
    assert status.cost_usd == Decimal("0.625")
    assert [s.url for s in status.sources] == [f"https://example.org/{i}" for i in (1, 2, 3)]
    assert "sky blue" in status.output
    assert len(seen_steps) > 1  # progress was visible while it ran


async def test_an_unchanged_status_is_not_sent_again(
    client: ValyuResearch, valyu: ValyuFake
) -> None:
    created = await client.create(ResearchTask("[[research fail=never steps=1]] q"))
    first = await until_state(client, created.id, "running")
    await asyncio.sleep(0.05)  # the script is done moving: it never ends
    current = await client.status(created.id)
    assert current is not None and current.etag
    assert await client.status(created.id, etag=current.etag) is None
    assert first.id == created.id


async def until_state(client: ValyuResearch, task_id: str, state: str) -> ResearchStatus:
    for _ in range(500):
        status = await client.status(task_id)
        if status is not None and status.state == state:
            return status
        await asyncio.sleep(0.005)
    raise AssertionError(f"the task never reached {state}")


async def test_a_task_failing_while_running_reports_its_error(client: ValyuResearch) -> None:
    created = await client.create(ResearchTask("[[research fail=running]] q"))
    status = await until_ended(client, created.id)
    assert status.state == "failed" and status.error


async def test_refusals_are_typed(client: ValyuResearch, valyu: ValyuFake) -> None:
    with pytest.raises(ProviderRejected):
        await client.create(ResearchTask("[[research fail=at_create]] q"))
    with pytest.raises(ProviderRateLimited) as limited:
        await client.create(ResearchTask("[[research fail=rate_limited]] q"))
    assert limited.value.retry_after == 7  # type: ignore[attr-defined]
    with pytest.raises(ProviderRejected):
        await client.create(ResearchTask("q", mode="turbo"))  # refused before any call
    with pytest.raises(ProviderRejected):
        await client.create(ResearchTask(" "))
    assert valyu.tasks == {}
    wrong = ValyuResearch("wrong-key", valyu.base_url)
    try:
        with pytest.raises(ProviderAuthFailed):
            await wrong.create(ResearchTask("q"))
    finally:
        await wrong.aclose()


async def test_a_cancelled_task_stops_and_cancelling_an_ended_one_is_harmless(
    client: ValyuResearch, valyu: ValyuFake
) -> None:
    running = await client.create(ResearchTask("[[research fail=never]] q"))
    await client.cancel(running.id)
    assert (await until_ended(client, running.id)).state == "cancelled"
    done = await client.create(ResearchTask("[[research steps=1]] q"))
    await until_ended(client, done.id)
    await client.cancel(done.id)  # the fake answers 400: already ended
    assert (await client.status(done.id)).state == "succeeded"  # type: ignore[union-attr]
    assert valyu.cancels == [running.id, done.id]


async def test_a_signed_callback_is_read_and_every_bad_one_is_refused(
    client: ValyuResearch, receiver: Receiver
) -> None:
    async def delivered(script: str) -> tuple[str, str, dict[str, str], bytes]:
        created = await client.create(
            ResearchTask(f"[[research steps=1 {script}]] q", webhook_url=receiver.url)
        )
        assert created.webhook_secret and len(created.webhook_secret) == 64
        headers, body = await asyncio.wait_for(receiver.deliveries.get(), 5)
        return created.id, created.webhook_secret, headers, body

    task_id, secret, headers, body = await delivered("cost=0.5")
    status = verify_callback(headers, body, secret=secret, task_id=task_id)
    assert status.state == "succeeded" and status.cost_usd == Decimal("0.5")

    with pytest.raises(CallbackUnverified, match="another task"):
        verify_callback(headers, body, secret=secret, task_id="f992a8ab-other")
    with pytest.raises(CallbackUnverified, match="signature"):
        verify_callback(headers, body.replace(b"0.5", b"0.0"), secret=secret, task_id=task_id)
    with pytest.raises(CallbackUnverified, match="not signed"):
        verify_callback({}, body, secret=secret, task_id=task_id)
    with pytest.raises(CallbackUnverified, match="not signed"):
        verify_callback(headers, body, secret=None, task_id=task_id)

    for script, reason in (
        ("callback=bad_signature", "signature"),
        ("callback=stale", "stale"),
        ("callback=other_task", "another task"),
    ):
        task_id, secret, headers, body = await delivered(script)
        with pytest.raises(CallbackUnverified, match=reason):
            verify_callback(headers, body, secret=secret, task_id=task_id)

    task_id, secret, *_ = await delivered("callback=twice")
    again_headers, again_body = await asyncio.wait_for(receiver.deliveries.get(), 5)
    assert verify_callback(again_headers, again_body, secret=secret, task_id=task_id).ended


def test_unknown_states_and_odd_fields_read_as_still_running() -> None:
    status = parse_status(
        {
            "deepresearch_id": "t1",
            "status": "thinking_hard",
            "progress": {"current_step": -1, "total_steps": True},
            "cost": "NaN",
            "sources": ["not a source", {"title": "T", "url": "https://x"}],
        }
    )
    assert status.state == "running" and not status.ended
    assert (status.step, status.total_steps, status.cost_usd) == (0, 0, None)
    assert [s.url for s in status.sources] == ["https://x"]
