"""An outage of Redis or the app database answers 503 `service_unavailable` with Retry-After,
never 500; paths that do not need the missing service keep working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager

from lipika.app import create_app
from lipika.config import Settings
from tests.fixtures.outages import OwnRedis, Relay, own_redis  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def app_client(settings: Settings, **changes: object) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the suite's databases with `changes` to its settings (and small pools:
    the PostgreSQL is shared with other test runs), and a client."""
    small = {"db_pool_size": 4, "checkpoint_pool_size": 2}
    configured = Settings(**{**settings.model_dump(), **small, **changes}, _env_file=None)
    async with LifespanManager(create_app(configured)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
            yield http


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.request.url, response.text)
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "service_unavailable")
    assert int(response.headers["retry-after"]) >= 1


async def test_redis_down_answers_logins_with_503_and_threads_go_on(
    settings: Settings, own_redis: OwnRedis, client: httpx.AsyncClient, signup
) -> None:
    account = await signup("redis-outage")  # through the suite's app; `client` empties tables
    async with app_client(settings, redis_url=own_redis.url) as http:
        thread = (await http.post("/v1/threads", json={"title": "t"}, headers=account.headers)).json()
        assert (await http.get("/v1/threads", headers=account.headers)).status_code == 200

        own_redis.stop()

        # The abuse limits fail closed: an outage must not lift them.
        for response in (
            await http.post("/v1/auth/login", json={"email": account.email, "password": account.password}),
            await http.post("/v1/auth/signup", json={"email": "new@example.com", "password": "a long password"}),
        ):
            assert_unavailable(response)

        # What does not need Redis still works: the caller, threads (their run leases live in
        # the app database), their messages, and a metered chat completion.
        assert (await http.get("/v1/me", headers=account.headers)).status_code == 200
        path = f"/v1/threads/{thread['id']}"
        message = {"content": "Hello", "model": "demo", "max_tokens": 8, "stream": False}
        assert (await http.get(path, headers=account.headers)).status_code == 200
        assert (await http.patch(path, json={"title": "renamed"}, headers=account.headers)).status_code == 200
        sent = await http.post(f"{path}/messages", json=message, headers=account.headers)
        assert sent.status_code == 200, sent.text
        chat = await http.post(
            "/v1/chat/completions",
            json={"model": "demo", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]},
            headers=account.headers,
        )
        assert chat.status_code == 200, chat.text
        assert (await http.delete(path, headers=account.headers)).status_code == 204
        assert (await http.get("/readyz")).status_code == 503


async def test_the_app_database_going_away_answers_503(
    settings: Settings, client: httpx.AsyncClient, signup
) -> None:
    account = await signup("db-outage")
    target = urlsplit(settings.database_url)
    relay = Relay(target.hostname or "127.0.0.1", target.port or 5432)
    await relay.start()
    netloc = f"{target.username}@127.0.0.1:{relay.port}" if target.username else f"127.0.0.1:{relay.port}"
    through_relay = urlunsplit(target._replace(netloc=netloc))
    try:
        async with app_client(settings, database_url=through_relay) as http:
            assert (await http.get("/v1/me", headers=account.headers)).status_code == 200

            await relay.cut()

            # A pooled connection that died, then new connections refused.
            for _ in range(2):
                assert_unavailable(await http.get("/v1/me", headers=account.headers))
                assert_unavailable(await http.get("/v1/billing/balance", headers=account.headers))
            assert_unavailable(
                await http.post("/v1/auth/login", json={"email": account.email, "password": account.password})
            )
    finally:
        await relay.cut()
