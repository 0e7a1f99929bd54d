"""Refusals that cannot succeed on retry say so (`x-should-retry: false`), and the official
SDK, which retries 409, 429 and 5xx on its own, then sends each request once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import openai
import pytest
from sqlalchemy import insert
from starlette.types import ASGIApp, Receive, Scope, Send

from lipika.billing.models import UsageCounter
from tests.fixtures.live import serve

MESSAGES = [{"role": "user", "content": "Hello"}]


class Counting:
    """The app, counting the chat requests that reach it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.chat_requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.chat_requests += 1
        await self.app(scope, receive, send)


@pytest.fixture
async def counted(app) -> AsyncIterator[tuple[Counting, str]]:
    counting = Counting(app)
    async with serve(counting) as url:
        yield counting, url


def sdk(url: str, token: str, **headers: str) -> openai.AsyncOpenAI:
    # The SDK's own default backoff is short; two retries is what it does out of the box.
    return openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key=token, max_retries=2, default_headers=headers or None
    )


async def test_a_member_cap_is_not_retried(
    counted: tuple[Counting, str], client: httpx.AsyncClient, team
) -> None:
    counting, url = counted
    workspace_id, people = await team()
    capped = await client.put(
        f"/v1/workspaces/{workspace_id}/members/{people['member'].user_id}/credit-cap",
        json={"monthly_credits": "0.000001"},
        headers=people["owner"].headers,
    )
    assert capped.status_code == 204
    async with sdk(url, people["member"].access_token, **{"X-Workspace-Id": workspace_id}) as client_sdk:
        with pytest.raises(openai.APIStatusError) as raised:
            await client_sdk.chat.completions.create(model="demo", messages=MESSAGES)
    assert raised.value.status_code == 429, raised.value.body
    assert raised.value.code == "member_monthly_cap"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert counting.chat_requests == 1


async def test_an_unconfigured_model_is_not_retried(counted: tuple[Counting, str], signup) -> None:
    counting, url = counted
    account = await signup()
    async with sdk(url, account.access_token) as client_sdk:
        with pytest.raises(openai.APIStatusError) as raised:
            await client_sdk.chat.completions.create(model="gpt-5", messages=MESSAGES)
    assert raised.value.status_code == 503
    assert raised.value.code == "model_unavailable"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert counting.chat_requests == 1


async def test_an_idempotency_replay_is_not_retried(counted: tuple[Counting, str], signup) -> None:
    counting, url = counted
    account = await signup()
    async with sdk(url, account.access_token) as client_sdk:
        key = {"Idempotency-Key": "retry-semantics-1"}
        first = await client_sdk.chat.completions.create(
            model="demo", messages=MESSAGES, max_tokens=4, extra_headers=key
        )
        replayed = await client_sdk.chat.completions.create(
            model="demo", messages=MESSAGES, max_tokens=4, extra_headers=key
        )
        assert replayed.id == first.id
        with pytest.raises(openai.UnprocessableEntityError) as raised:
            await client_sdk.chat.completions.create(
                model="demo", messages=MESSAGES, max_tokens=5, extra_headers=key
            )
    assert raised.value.code == "idempotency_key_reused"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert counting.chat_requests == 3


async def test_a_daily_limit_says_when_it_resets(counted: tuple[Counting, str], signup, books) -> None:
    counting, url = counted
    account = await signup()
    limit = 200  # the free plan's daily requests to `demo` per member
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    key = f"req:{account.personal_workspace_id}:{account.user_id}:demo:{day}"
    async with books.sessionmaker.begin() as session:
        await session.execute(insert(UsageCounter).values(key=key, value=limit, day=day))
    async with sdk(url, account.access_token) as client_sdk:
        with pytest.raises(openai.RateLimitError) as raised:
            await client_sdk.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=4)
    headers = raised.value.response.headers
    assert raised.value.code == "daily_request_limit"
    assert headers["x-should-retry"] == "false"
    assert 0 < int(headers["retry-after"]) <= 24 * 3600
    assert counting.chat_requests == 1
