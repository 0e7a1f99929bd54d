"""`/metrics`: the Prometheus text format, and counters that move by exactly what happened."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.chat.sse import parse

Samples = dict[tuple[str, frozenset], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0) - before.get(key, 0)


def events_of(response: httpx.Response) -> list[dict]:
    return [
        json.loads(block.removeprefix("data: "))
        for block in response.text.split("\n\n")
        if block.startswith("data: ")
    ]


async def test_a_stream_a_refusal_and_an_agent_run_move_the_counters_exactly(
    client: httpx.AsyncClient, signup, books
) -> None:
    account, broke = await signup(), await signup()
    await books.set_available(uuid.UUID(broke.personal_workspace_id), 1)
    thread = await client.post("/v1/threads", json={}, headers=account.headers)
    before = await scrape(client)

    streamed = await client.post(
        "/v1/chat/completions",
        json={
            "model": "demo",
            "messages": [{"role": "user", "content": "Hello metrics"}],
            "max_tokens": 12,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers=account.headers,
    )
    usage = parse(streamed.text).usage
    refused = await client.post(
        "/v1/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        headers=broke.headers,
    )
    run = await client.post(
        f"/v1/threads/{thread.json()['id']}/messages",
        json={"content": "Hello agent", "model": "demo", "max_tokens": 8},
        headers=account.headers,
    )
    steps = [e for e in events_of(run) if e["type"] == "usage"]
    after = await scrape(client)

    assert usage is not None and refused.status_code == 402 and steps
    assert events_of(run)[-1]["type"] == "done"
    demo = {"provider": "demo", "model": "demo"}
    admissions = "lipika_admissions_total"
    assert moved(before, after, admissions, operation="chat.completion", result="admitted") == 1
    assert (
        moved(before, after, admissions, operation="chat.completion", result="insufficient_credits")
        == 1
    )
    assert moved(before, after, admissions, operation="agent.model", result="admitted") == len(steps)
    settled = moved(
        before, after, "lipika_settlements_total", status="captured", outcome="success"
    )
    assert settled == 1 + len(steps)
    output = moved(before, after, "lipika_tokens_total", **demo, kind="output_tokens", outcome="success")
    assert output == usage["completion_tokens"] + sum(s["output_tokens"] for s in steps)
    credits = moved(
        before, after, "lipika_credits_charged_microcredits_total", **demo, outcome="success"
    )
    assert credits == usage["credits_charged"] + sum(s["credits_charged"] for s in steps)
    first_tokens = moved(before, after, "lipika_time_to_first_token_seconds_count", **demo)
    assert first_tokens == 1 + len(steps)
    route = {"method": "POST", "route": "/v1/chat/completions"}
    assert moved(before, after, "lipika_http_requests_total", **route, status="200") == 1
    assert moved(before, after, "lipika_http_requests_total", **route, status="402") == 1
    assert moved(
        before,
        after,
        "lipika_http_requests_total",
        method="POST",
        route="/v1/threads/{thread_id}/messages",
        status="200",
    ) == 1
    assert after[("lipika_open_streams", frozenset({"kind": "sse"}.items()))] == 0


async def test_pools_are_reported_and_labels_stay_bounded(
    client: httpx.AsyncClient, signup, settings
) -> None:
    account = await signup()
    await client.get(f"/v1/threads/{uuid.uuid4()}", headers=account.headers)
    samples = await scrape(client)

    pools = {dict(labels)["pool"] for name, labels in samples if name == "lipika_db_pool_connections_max"}
    assert pools == ({"app", "checkpoint"} if settings.checkpoint_database_url else {"app"})
    routes = Counter(
        dict(labels)["route"] for name, labels in samples if name == "lipika_http_requests_total"
    )
    assert "/v1/threads/{thread_id}" in routes
    ids = {account.user_id, account.personal_workspace_id}
    assert not any(i in value for _, labels in samples for _, value in labels for i in ids)


async def test_a_metrics_port_of_their_own_takes_them_off_the_api(settings) -> None:
    import socket

    from asgi_lifespan import LifespanManager

    from lipika.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    own_port = settings.model_copy(update={"metrics_port": port})
    async with LifespanManager(create_app(own_port)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as api:
            assert (await api.get("/metrics")).status_code == 404
            await api.get("/healthz")
        async with httpx.AsyncClient() as scraper:
            scraped = await scraper.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200
    assert 'lipika_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in scraped.text


async def test_a_provider_failure_is_counted_by_provider_and_kind(
    provider_client: httpx.AsyncClient, signup, fake_providers
) -> None:
    account = await signup()
    fake_providers["openai"].reset()
    before = await scrape(provider_client)

    failed = await provider_client.post(
        "/v1/chat/completions",
        json={
            "model": "gpt-5-mini",
            "messages": [{"role": "user", "content": "Hi [[fail=overloaded]]"}],
            "stream": True,
        },
        headers=account.headers,
    )
    after = await scrape(provider_client)

    assert (failed.status_code, failed.json()["error"]["code"]) == (503, "provider_overloaded")
    errors = "lipika_provider_errors_total"
    assert moved(before, after, errors, provider="openai", kind="provider_overloaded") == 1
    released = moved(
        before,
        after,
        "lipika_settlements_total",
        status="released",
        outcome="provider_error_before_output",
    )
    assert released == 1
    charged = "lipika_credits_charged_microcredits_total"
    openai_credits = [key for key in after if key[0] == charged and ("provider", "openai") in key[1]]
    assert all(after[key] == before.get(key, 0) for key in openai_credits)
