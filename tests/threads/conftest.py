"""Thread fixtures: calls to the threads API, and their server-sent events read back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lipika.providers.base import ChatProvider
from lipika.providers.demo import DemoProvider
from tests.agent.conftest import checkpoint_saver, make_agent  # noqa: F401  (shared with the agent tests)


def events_of(response: httpx.Response) -> list[dict]:
    """The `data:` payloads of a finished SSE response (heartbeat comments skipped)."""
    assert response.headers["content-type"].startswith("text/event-stream"), response.text
    events = []
    for block in response.text.split("\n\n"):
        if block and not block.startswith(":"):
            assert block.startswith("data: "), block
            events.append(json.loads(block.removeprefix("data: ")))
    return events


@pytest.fixture
def threads(client: httpx.AsyncClient):
    """Small calls on the threads API as a given caller (`headers`)."""

    class Calls:
        async def create(
            self, headers: dict[str, str], title: str | None = None, visibility: str | None = None
        ) -> dict:
            body = {"title": title, "visibility": visibility}
            response = await client.post(
                "/v1/threads", json={k: v for k, v in body.items() if v}, headers=headers
            )
            assert response.status_code == 201, response.text
            return response.json()

        async def send(
            self, headers: dict[str, str], thread_id: str, content: str = "Hello there", **body: Any
        ) -> httpx.Response:
            payload = {"content": content, "model": "demo", "max_tokens": 8, **body}
            return await client.post(
                f"/v1/threads/{thread_id}/messages", json=payload, headers=headers
            )

        async def say(
            self, headers: dict[str, str], thread_id: str, content: str = "Hello there", **body: Any
        ) -> list[dict]:
            response = await self.send(headers, thread_id, content, **body)
            assert response.status_code == 200, response.text
            events = events_of(response)
            assert events[-1]["type"] == "done", events[-1]
            return events

        async def history(self, headers: dict[str, str], thread_id: str, **params: Any) -> dict:
            response = await client.get(
                f"/v1/threads/{thread_id}/messages", params=params, headers=headers
            )
            assert response.status_code == 200, response.text
            return response.json()

    return Calls()


@pytest.fixture
def use_model(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, ChatProvider], None]:
    """Serves a provider's models with a stand-in adapter, for this test."""
    providers = app.lifespan_state["providers"].providers  # type: ignore[attr-defined]

    def use(provider: str, adapter: ChatProvider) -> None:
        monkeypatch.setitem(providers, provider, adapter)

    return use


def slow_demo(delay: float) -> DemoProvider:
    return DemoProvider(token_delay=delay)
