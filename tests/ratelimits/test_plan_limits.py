"""Rate limits by plan: requests and tokens per minute per API key and per workspace, on
counters that every app instance on the same Redis shares."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from lipika.app import create_app
from lipika.billing.plans import DEFAULT_PATH
from lipika.config import Settings

KEY_RPM, WORKSPACE_RPM, WORKSPACE_TPM = 3, 5, 2000
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200}


def tight_catalogue(path: Path) -> Path:
    shipped = DEFAULT_PATH.read_text()
    tight = (
        f"rate_limits = {{ workspace_requests_per_minute = {WORKSPACE_RPM}, "
        f"workspace_tokens_per_minute = {WORKSPACE_TPM}, key_requests_per_minute = {KEY_RPM} }}"
    )
    free, rest = shipped.split("[plans.pro]", 1)
    free = re.sub(r"^rate_limits = .*$", tight, free, flags=re.MULTILINE)
    path.write_text(free + "[plans.pro]" + rest)
    return path


@pytest.fixture(scope="module")
def tight_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    plans = tight_catalogue(tmp_path_factory.mktemp("plans") / "plans.toml")
    prefix = f"{settings.redis_key_prefix}-rate-{uuid.uuid4().hex[:8]}"
    changes = {
        "plans_path": plans,
        "redis_key_prefix": prefix,
        "db_pool_size": 4,
        "checkpoint_pool_size": 2,
    }
    return Settings(**{**settings.model_dump(), **changes}, _env_file=None)


async def _running(settings: Settings) -> AsyncIterator[FastAPI]:
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app


@pytest.fixture(scope="module")
async def tight_app(tight_settings: Settings) -> AsyncIterator[FastAPI]:
    async for app in _running(tight_settings):
        yield app
    if tight_settings.redis_url:
        shared = redis.asyncio.Redis.from_url(tight_settings.redis_url)
        async for key in shared.scan_iter(match=f"{tight_settings.redis_key_prefix}:*"):
            await shared.delete(key)
        await shared.aclose()


@pytest.fixture(scope="module")
async def replica_app(tight_settings: Settings, tight_app: FastAPI) -> AsyncIterator[FastAPI]:
    """A second instance of the same configuration: another pod on the same Redis."""
    async for app in _running(tight_settings):
        yield app


def http(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lipika.test")


async def new_key(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    response = await client.post("/v1/api-keys", json={"name": "k"}, headers=headers)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


async def test_a_key_gets_its_requests_per_minute_then_a_typed_429(
    client: httpx.AsyncClient, tight_app: FastAPI, signup
) -> None:
    account = await signup()
    key = await new_key(client, account.headers)
    async with http(tight_app) as tight:
        answers = [await tight.post("/v1/chat/completions", json=CHAT, headers=key) for _ in range(KEY_RPM)]
        refused = await tight.post("/v1/chat/completions", json=CHAT, headers=key)

    assert [a.status_code for a in answers] == [200] * KEY_RPM, answers[-1].text
    assert [a.headers["x-ratelimit-limit-requests"] for a in answers] == [str(KEY_RPM)] * KEY_RPM
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
    assert re.fullmatch(r"(\d+m)?\d+s", answers[0].headers["x-ratelimit-reset-requests"])
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert error["details"]["scope"] == "api_key"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-should-retry"] == "true"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


async def test_the_workspace_limit_binds_every_key_and_login_together(
    client: httpx.AsyncClient, tight_app: FastAPI, signup
) -> None:
    account = await signup()
    first, second = await new_key(client, account.headers), await new_key(client, account.headers)
    async with http(tight_app) as tight:
        statuses = [
            (await tight.post("/v1/chat/completions", json=CHAT, headers=h)).status_code
            for h in (first, first, second, second, account.headers)
        ]
        refused = await tight.post("/v1/chat/completions", json=CHAT, headers=account.headers)
    assert statuses == [200] * WORKSPACE_RPM
    assert refused.status_code == 429
    assert refused.json()["error"]["details"]["scope"] == "workspace"


async def test_tokens_count_the_allowance_then_what_was_used(
    client: httpx.AsyncClient, tight_app: FastAPI, signup
) -> None:
    account = await signup()
    async with http(tight_app) as tight:
        first = await tight.post("/v1/chat/completions", json=CHAT, headers=account.headers)
        second = await tight.post("/v1/chat/completions", json=CHAT, headers=account.headers)
        too_big = await tight.post(
            "/v1/chat/completions", json={**CHAT, "max_tokens": WORKSPACE_TPM + 1}, headers=account.headers
        )
    assert first.status_code == second.status_code == 200, second.text
    assert first.headers["x-ratelimit-limit-tokens"] == str(WORKSPACE_TPM)
    allowance = WORKSPACE_TPM - int(first.headers["x-ratelimit-remaining-tokens"])
    used = first.json()["usage"]["total_tokens"]
    assert 0 < used < allowance
    # The first request's unused allowance was given back when it ended.
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == WORKSPACE_TPM - used - allowance
    assert too_big.status_code == 429, too_big.text
    assert too_big.headers["x-should-retry"] == "false"  # more than a whole minute's tokens
    assert "retry-after" not in too_big.headers


async def test_a_streamed_completion_is_counted_too(
    client: httpx.AsyncClient, tight_app: FastAPI, signup
) -> None:
    account = await signup()
    async with http(tight_app) as tight:
        streamed = await tight.post(
            "/v1/chat/completions", json={**CHAT, "stream": True}, headers=account.headers
        )
        after = await tight.post("/v1/chat/completions", json=CHAT, headers=account.headers)
    assert streamed.status_code == 200 and streamed.headers["x-ratelimit-remaining-requests"] == str(WORKSPACE_RPM - 1)
    assert after.headers["x-ratelimit-remaining-requests"] == str(WORKSPACE_RPM - 2)
    allowance = WORKSPACE_TPM - int(streamed.headers["x-ratelimit-remaining-tokens"])
    assert int(after.headers["x-ratelimit-remaining-tokens"]) > WORKSPACE_TPM - 2 * allowance


@pytest.mark.postgres
async def test_two_replicas_on_one_redis_share_the_windows(
    client: httpx.AsyncClient, tight_app: FastAPI, replica_app: FastAPI, signup, backend: str
) -> None:
    account = await signup()
    key = await new_key(client, account.headers)
    async with http(tight_app) as one, http(replica_app) as two:
        statuses = [
            (await pod.post("/v1/chat/completions", json=CHAT, headers=key)).status_code
            for pod in (one, two, one, two)
        ]
    assert statuses == [200] * KEY_RPM + [429]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"requests_per_hour": 5}, "rate_limits has no"),
        ({"key_requests_per_minute": 0}, "must be a whole number"),
        ({"workspace_tokens_per_minute": "many"}, "must be a whole number"),
    ],
)
def test_the_catalogue_refuses_bad_rate_limits(limits: dict, message: str) -> None:
    from lipika.billing.plans import PlanCatalogue, PlanCatalogueError
    from lipika.billing.pricebook import PriceBook

    with pytest.raises(PlanCatalogueError, match=message):
        PlanCatalogue.parse({"plans": {"free": {"models": ["demo"], "rate_limits": limits}}}, PriceBook.load())


def test_the_shipped_plans_have_rate_limits() -> None:
    from lipika.billing.plans import PlanCatalogue
    from lipika.billing.pricebook import PriceBook

    plans = PlanCatalogue.load(PriceBook.load()).plans
    assert all(plan.rate_limits.workspace_requests_per_minute for plan in plans.values())


async def test_thread_messages_count_as_requests(
    client: httpx.AsyncClient, tight_app: FastAPI, signup
) -> None:
    account = await signup()
    async with http(tight_app) as tight:
        thread = (await tight.post("/v1/threads", json={"title": "t"}, headers=account.headers)).json()
        message = {"content": "Hello", "model": "demo", "max_tokens": 8, "stream": False}
        sent = await tight.post(f"/v1/threads/{thread['id']}/messages", json=message, headers=account.headers)
        assert sent.status_code == 200, sent.text
        assert sent.headers["x-ratelimit-remaining-requests"] == str(WORKSPACE_RPM - 1)
        chat = await tight.post("/v1/chat/completions", json=CHAT, headers=account.headers)
        assert chat.headers["x-ratelimit-remaining-requests"] == str(WORKSPACE_RPM - 2)


@pytest.mark.postgres
async def test_concurrent_requests_on_two_replicas_get_exactly_the_limit(
    client: httpx.AsyncClient, tight_app: FastAPI, replica_app: FastAPI, signup, backend: str
) -> None:
    import asyncio

    account = await signup()
    key = await new_key(client, account.headers)
    async with http(tight_app) as one, http(replica_app) as two:
        responses = await asyncio.gather(
            *(pod.post("/v1/chat/completions", json=CHAT, headers=key) for pod in (one, two) * 10)
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * KEY_RPM + [429] * (20 - KEY_RPM), [r.text for r in responses if r.status_code not in (200, 429)][:2]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"rate_limit_exceeded"}
