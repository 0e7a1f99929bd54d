"""Deepgram live streaming (`/v1/listen`) on the official SDK's async socket client.

The SDK's `AsyncDeepgramClient.listen.v1.connect(...)` is an async context manager over one
WebSocket with `send_media`, `send_finalize`, `send_close_stream`, `send_keep_alive` and an
async iterator of typed messages, which is what a relay needs. Audio goes as it comes: PCM16
as `linear16` at the session's rate, WebM/Opus as a container (Deepgram reads its header).

Deepgram closes a socket that had neither audio nor a KeepAlive for 10 seconds; a session
sends one every `KEEPALIVE_SECONDS` while the client is quiet. Usage is the `duration` of its
closing `Metadata` message: the audio seconds it bills.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import websockets
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment

from lipika.providers.base import STATUS_ERRORS, ProviderError, ProviderTimeout
from lipika.providers.capabilities import (
    PCM16,
    WEBM_OPUS,
    Transcript,
    TranscriptionEvent,
    TranscriptionOptions,
    TranscriptionProvider,
    TranscriptionSession,
    TranscriptionUsage,
)

KEEPALIVE_SECONDS = 4.0


def environment(base_url: str) -> DeepgramClientEnvironment:
    """Every Deepgram endpoint at one base (http(s)://host:port), for a self-hosted or fake server."""
    base = base_url.rstrip("/")
    ws = "ws" + base[len("http") :] if base.startswith("http") else base
    return DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)


class DeepgramSession(TranscriptionSession):
    def __init__(self, socket: Any, stack: contextlib.AsyncExitStack) -> None:
        self.socket = socket
        self.stack = stack
        self.closing = False
        self._last_sent = time.monotonic()
        self._keepalive = asyncio.create_task(self._keep_alive(), name="deepgram-keepalive")

    async def _keep_alive(self) -> None:
        with contextlib.suppress(Exception):
            while not self.closing:
                await asyncio.sleep(KEEPALIVE_SECONDS / 4)
                if time.monotonic() - self._last_sent >= KEEPALIVE_SECONDS and not self.closing:
                    await self.socket.send_keep_alive()
                    self._last_sent = time.monotonic()

    async def send(self, audio: bytes) -> None:
        try:
            await self.socket.send_media(audio)
        except websockets.ConnectionClosed as exc:
            raise ProviderError(f"Deepgram closed the session: {exc}") from exc
        self._last_sent = time.monotonic()

    async def finalize(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.socket.send_finalize()

    async def aclose(self) -> None:
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.socket.send_close_stream()

    async def abort(self) -> None:
        self.closing = True
        self._keepalive.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.stack.aclose()

    async def events(self) -> AsyncIterator[TranscriptionEvent]:
        try:
            async for message in self.socket:
                kind = getattr(message, "type", None)
                if kind == "Results":
                    yield _transcript(message)
                elif kind == "Metadata":
                    yield TranscriptionUsage(float(message.duration))
                elif kind == "Error":
                    raise ProviderError(
                        f"Deepgram: {message.description} ({message.code or message.variant})"
                    )
        except websockets.ConnectionClosedError as exc:
            raise ProviderError(f"Deepgram dropped the session: {exc}") from exc
        finally:
            self._keepalive.cancel()
        if not self.closing:
            raise ProviderError("Deepgram ended the session")
        await self.abort()


def _transcript(message: Any) -> Transcript:
    alternatives = message.channel.alternatives
    text = alternatives[0].transcript if alternatives else ""
    start = float(message.start)
    return Transcript(text, bool(message.is_final), start, start + float(message.duration))


class DeepgramProvider(TranscriptionProvider):
    name = "deepgram"
    accepts = frozenset({PCM16, WEBM_OPUS})

    def __init__(self, api_key: str | None, base_url: str | None, timeout: float = 30) -> None:
        self.timeout = min(timeout, 30)
        self._client = (
            AsyncDeepgramClient(
                api_key=api_key,
                environment=environment(base_url)
                if base_url
                else DeepgramClientEnvironment.PRODUCTION,
            )
            if api_key
            else None
        )

    @property
    def available(self) -> bool:
        return self._client is not None

    async def open(self, options: TranscriptionOptions) -> TranscriptionSession:
        if self._client is None:
            raise ProviderError("Deepgram is not configured")
        params: dict[str, Any] = {
            "model": options.model,
            "interim_results": "true" if options.interim_results else "false",
            "punctuate": "true",
        }
        if options.language:
            params["language"] = options.language
        if options.audio_format == PCM16:
            params.update(encoding="linear16", sample_rate=options.sample_rate, channels=1)
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(self.timeout):
                socket = await stack.enter_async_context(self._client.listen.v1.connect(**params))
        except ApiError as exc:
            await stack.aclose()
            error = STATUS_ERRORS.get(exc.status_code or 0, ProviderError)
            raise error(f"Deepgram refused the session ({exc.status_code})") from exc
        except TimeoutError as exc:
            await stack.aclose()
            raise ProviderTimeout("Deepgram did not answer in time") from exc
        except (OSError, websockets.WebSocketException) as exc:
            await stack.aclose()
            raise ProviderError(f"cannot reach Deepgram: {exc}") from exc
        return DeepgramSession(socket, stack)
