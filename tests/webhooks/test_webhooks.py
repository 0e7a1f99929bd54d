"""Outbound webhooks: a workspace registers a URL; each job's end is delivered signed per
Standard Webhooks (verified here with the `standardwebhooks` package), retried with backoff
after failures, one record per attempt; another workspace never sees the endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from lipika.webhooks.service import WebhookSender
from lipika.webhooks.targets import WebhookUrlNotPublic, check_url, resolves_public
from tests.jobs.conftest import Jobs

pytestmark = pytest.mark.usefixtures("backend")


@dataclass
class Receiver:
    """A real HTTP endpoint that answers `failures` 500s before it accepts."""

    failures: int = 0
    secret: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    verified: list[dict] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, body))
        try:
            self.verified.append(Webhook(self.secret).verify(body, dict(request.headers)))
        except WebhookVerificationError:
            return web.Response(status=401)
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500)
        return web.Response(status=204)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.add_routes([web.post("/hooks", found.handle)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.port = runner.addresses[0][1]
    yield found
    await runner.cleanup()


@pytest.fixture
def sender(app, monkeypatch: pytest.MonkeyPatch) -> WebhookSender:
    sender: WebhookSender = app.lifespan_state["webhooks"]
    monkeypatch.setattr(sender, "retry_base", 0.05)
    return sender


async def _register(jobs: Jobs, headers: dict, receiver: Receiver, **body) -> dict:
    created = await jobs.client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url, **body}, headers=headers
    )
    assert created.status_code == 201, created.text
    receiver.secret = created.json()["secret"]
    assert receiver.secret.startswith("whsec_")
    return created.json()


async def _delivered(sender: WebhookSender, receiver: Receiver, count: int) -> None:
    async with asyncio.timeout(30):  # generous: a loaded 2-core machine, not a speed goal
        while len([v for v in receiver.verified]) < count or receiver.failures > 0:
            await sender.deliver_due()
            await asyncio.sleep(0.05)


async def test_a_finished_job_is_delivered_signed_and_retried(
    jobs: Jobs, sender: WebhookSender, receiver: Receiver, signup, books
) -> None:
    me = await signup("hooks")
    endpoint = await _register(jobs, me.headers, receiver)
    listed = (await jobs.client.get("/v1/webhook-endpoints", headers=me.headers)).json()["data"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]

    receiver.failures = 2
    job = (await jobs.submit_video(me.headers, seconds=2)).json()
    await jobs.wait(job["id"], me.headers)
    await _delivered(sender, receiver, 3)
    await asyncio.sleep(0.2)
    await sender.deliver_due()  # delivered: nothing more is sent
    assert len(receiver.received) == 3
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(ids) == 1  # the same message each time: a receiver deduplicates on it
    event = receiver.verified[-1]
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == job["id"] and event["data"]["status"] == "succeeded"

    attempts = await jobs.client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/attempts", headers=me.headers
    )
    rows = sorted(attempts.json()["data"], key=lambda a: a["attempt"])
    assert [(a["attempt"], a["status_code"]) for a in rows] == [(1, 500), (2, 500), (3, 204)]
    assert {a["type"] for a in rows} == {"job.succeeded"}
    await books.assert_balanced()


async def test_cancelled_and_failed_jobs_are_delivered_to_those_who_asked(
    jobs: Jobs, sender: WebhookSender, receiver: Receiver, signup
) -> None:
    me = await signup("hooks2")
    await _register(jobs, me.headers, receiver, events=["job.cancelled"])
    job = (await jobs.submit_video(me.headers, seconds=2)).json()
    await jobs.client.post(f"/v1/jobs/{job['id']}/cancel", headers=me.headers)
    bad = (await jobs.submit_video(me.headers, seconds=2)).json()
    await jobs.wait(bad["id"], me.headers)  # succeeded: not subscribed
    await _delivered(sender, receiver, 1)
    await asyncio.sleep(0.2)
    await sender.deliver_due()
    assert [v["type"] for v in receiver.verified] == ["job.cancelled"]
    assert receiver.verified[0]["data"]["id"] == job["id"]


async def test_an_unreachable_endpoint_is_given_up_after_the_last_attempt(
    jobs: Jobs, sender: WebhookSender, receiver: Receiver, signup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender, "max_attempts", 3)
    me = await signup("hooks3")
    endpoint = await _register(jobs, me.headers, receiver)
    receiver.failures = 100
    job = (await jobs.submit_video(me.headers, seconds=2)).json()
    await jobs.wait(job["id"], me.headers)
    async with asyncio.timeout(10):
        while len(receiver.received) < 3:
            await sender.deliver_due()
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    await sender.deliver_due()
    assert len(receiver.received) == 3
    attempts = (
        await jobs.client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/attempts", headers=me.headers
        )
    ).json()
    assert len(attempts["data"]) == 3


async def test_endpoints_are_the_workspaces_own(jobs: Jobs, receiver: Receiver, signup) -> None:
    owner, outsider = await signup("hookowner"), await signup("hookoutsider")
    endpoint = await _register(jobs, owner.headers, receiver)
    for method, path in (
        ("DELETE", f"/v1/webhook-endpoints/{endpoint['id']}"),
        ("GET", f"/v1/webhook-endpoints/{endpoint['id']}/attempts"),
    ):
        response = await jobs.client.request(method, path, headers=outsider.headers)
        assert response.status_code == 404, response.text
    assert (await jobs.client.get("/v1/webhook-endpoints", headers=outsider.headers)).json()[
        "data"
    ] == []
    bad = await jobs.client.post(
        "/v1/webhook-endpoints", json={"url": "not a url"}, headers=owner.headers
    )
    assert bad.status_code == 422
    deleted = await jobs.client.delete(
        f"/v1/webhook-endpoints/{endpoint['id']}", headers=owner.headers
    )
    assert deleted.status_code == 204


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/hook",
        "http://localhost/hook",
        "http://api.localhost./hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_and_local_urls_are_refused_at_registration(url: str) -> None:
    with pytest.raises(WebhookUrlNotPublic):
        check_url(url)


def test_public_urls_pass_the_registration_check() -> None:
    for url in (
        "https://hooks.example.com/lipika",
        "https://8.8.8.8/hook",
        "https://[2606:4700::1]/",
    ):
        check_url(url)


async def test_in_production_a_private_url_is_refused_and_never_posted_to(
    app,
    jobs: Jobs,
    sender: WebhookSender,
    receiver: Receiver,
    signup,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    me = await signup("ssrf")
    endpoint = await _register(jobs, me.headers, receiver)  # development allows localhost
    monkeypatch.setattr(sender, "allow_private", False)  # as production runs it
    monkeypatch.setattr(sender, "max_attempts", 1)
    job = (await jobs.submit_video(me.headers, seconds=2)).json()
    await jobs.wait(job["id"], me.headers)
    async with asyncio.timeout(10):
        while True:
            await sender.deliver_due()
            attempts = await jobs.client.get(
                f"/v1/webhook-endpoints/{endpoint['id']}/attempts", headers=me.headers
            )
            if attempts.json()["data"]:
                break
            await asyncio.sleep(0.05)
    [attempt] = attempts.json()["data"]
    assert attempt["status_code"] is None and attempt["error"].startswith("refused")
    assert receiver.received == []  # nothing reached the private address

    # and where private URLs are not allowed, registering one is refused outright
    monkeypatch.setattr(app.lifespan_state["settings"], "webhook_allow_private_urls", False)
    refused = await jobs.client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url}, headers=me.headers
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "webhook_url_not_public"
    assert refused.json()["error"]["param"] == "url"


async def test_a_name_resolving_to_a_private_address_is_refused_at_delivery() -> None:
    assert not await resolves_public("http://localhost.:9/hook")
    assert not await resolves_public("http://127.0.0.1:9/hook")
