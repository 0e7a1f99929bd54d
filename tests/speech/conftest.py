"""A second app on the test databases with speech limits compressed for tests (2-second
slices, a short idle timeout), served on a real socket for real WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import websockets
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from lipika.app import create_app
from lipika.config import Settings
from tests.fixtures.live import serve

SLICE = 2  # seconds of audio a slice holds, in these tests
RATE_MICRO = 10_000  # stt.demo: 0.01 credits a second


def speech_settings(settings: Settings, **overrides: Any) -> Settings:
    values = {
        **settings.model_dump(),
        "stt_slice_seconds": SLICE,
        "stt_idle_timeout_seconds": 1.5,
        "stt_max_lead_seconds": 3600,
        "stt_close_timeout_seconds": 3,
        "stt_max_session_seconds": 30,
        "stt_max_frame_bytes": 16_000,
        "stt_max_upload_bytes": 300_000,
        **overrides,
    }
    return Settings(**values, _env_file=None)


@pytest.fixture(scope="session")
async def speech_app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with LifespanManager(create_app(speech_settings(settings))) as manager:
        manager.app.lifespan_state = manager._state  # type: ignore[attr-defined]
        yield manager.app


@pytest.fixture(scope="session")
async def speech_url(speech_app: FastAPI) -> AsyncIterator[str]:
    async with serve(speech_app) as url:
        yield url.replace("http://", "ws://")


@pytest.fixture
async def speech_client(
    speech_app: FastAPI, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=speech_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
        yield http


@dataclass
class Received:
    """What a session sent back, in order."""

    events: list[dict] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def last(self) -> dict:
        return self.events[-1]

    @property
    def finals_text(self) -> str:
        return " ".join(e["text"] for e in self.of("final"))


async def collect(ws: websockets.ClientConnection, into: Received) -> Received:
    try:
        async for message in ws:
            into.events.append(orjson.loads(message))
    except websockets.ConnectionClosed:
        pass
    into.close_code = ws.close_code
    return into


@contextlib.asynccontextmanager
async def live(
    url: str, query: str = "", *, headers: dict | None = None, subprotocols: list[str] | None = None
) -> AsyncIterator[tuple[websockets.ClientConnection, Received, asyncio.Task]]:
    async with websockets.connect(
        f"{url}/v1/audio/transcriptions/live{query}",
        additional_headers=headers or {},
        subprotocols=subprotocols,  # type: ignore[arg-type]
        max_size=None,
    ) as ws:
        received = Received()
        reader = asyncio.create_task(collect(ws, received))
        try:
            yield ws, received, reader
        finally:
            if not reader.done():
                await asyncio.wait_for(reader, 10)


def workspace(account) -> uuid.UUID:
    return uuid.UUID(account.personal_workspace_id)
