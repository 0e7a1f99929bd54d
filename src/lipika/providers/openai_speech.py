"""OpenAI transcription on the official SDK: real-time sessions (`realtime.connect` with
`intent=transcription`) and files (`audio.transcriptions.create`).

Real time: the SDK's async connection sends and receives typed events over one WebSocket.
Audio goes as base64 PCM16 at 24 kHz (`input_audio_buffer.append`), so the session's PCM is
resampled first; the server's voice detection cuts it into items, each transcribed on its own
(`...input_audio_transcription.delta`, then `.completed` with its `usage`). Timestamps come
from `speech_started`/`speech_stopped` (or, for an item we committed, from the audio we sent).
Finalize and close commit what the buffer holds; a close then waits for every committed item's
transcript before it ends the session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai import AsyncOpenAI

from lipika.kit.audio import Resampler
from lipika.providers.base import STATUS_ERRORS, ProviderError, ProviderTimeout
from lipika.providers.capabilities import (
    BatchRequest,
    BatchTranscript,
    BatchTranscriptionProvider,
    Transcript,
    TranscriptionEvent,
    TranscriptionOptions,
    TranscriptionProvider,
    TranscriptionSession,
    TranscriptionUsage,
)

REALTIME_RATE = 24_000
MIN_COMMIT_SECONDS = 0.1  # the API refuses to commit less audio than this


def _field(event: Any, name: str, default: Any = None) -> Any:
    return (
        getattr(event, name, default) if not isinstance(event, dict) else event.get(name, default)
    )


class OpenAIRealtimeSession(TranscriptionSession):
    def __init__(self, connection: Any, manager: Any, sample_rate: int) -> None:
        self.connection = connection
        self.manager = manager
        self.rate = sample_rate
        self.resample = Resampler(sample_rate, REALTIME_RATE)
        self.sent_seconds = 0.0
        self.committed_upto = 0.0  # audio seconds in committed items
        self.spans: dict[str, list[float]] = {}
        self.text: dict[str, str] = {}
        self.pending: set[str] = set()  # committed items whose transcript has not come
        self.commits_awaited = 0
        self.usage_seconds = 0.0
        self.closing = False
        self._wake = asyncio.Event()

    async def _send(self, event: dict[str, Any]) -> None:
        try:
            await self.connection.send(event)
        except Exception as exc:  # the socket is gone
            raise ProviderError(f"OpenAI closed the session: {exc}") from exc

    async def send(self, audio: bytes) -> None:
        await self._send(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(self.resample(audio)).decode(),
            }
        )
        self.sent_seconds += len(audio) / (2 * self.rate)

    async def _commit(self) -> None:
        if self.sent_seconds - self.committed_upto >= MIN_COMMIT_SECONDS:
            self.commits_awaited += 1
            await self._send({"type": "input_audio_buffer.commit"})

    async def finalize(self) -> None:
        await self._commit()

    async def aclose(self) -> None:
        if self.closing:
            return
        await self._commit()
        self.closing = True
        self._wake.set()

    async def abort(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.connection.close()

    @property
    def _drained(self) -> bool:
        return self.closing and not self.pending and self.commits_awaited == 0

    async def events(self) -> AsyncIterator[TranscriptionEvent]:
        received = self._receive()
        try:
            while not self._drained:
                wake = asyncio.ensure_future(self._wake.wait())
                nxt = asyncio.ensure_future(anext(received))
                done, _ = await asyncio.wait({wake, nxt}, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                self._wake.clear()
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt
                    continue
                try:
                    event = nxt.result()
                except StopAsyncIteration:
                    if not self.closing:
                        raise ProviderError("OpenAI ended the session") from None
                    return
                if event is not None:
                    yield event
            yield TranscriptionUsage(self.usage_seconds or self.sent_seconds)
        finally:
            await received.aclose()
            await self.abort()

    async def _receive(self) -> AsyncIterator[TranscriptionEvent | None]:
        try:
            async for event in self.connection:
                yield self._read(event)
        except openai.OpenAIError as exc:
            raise ProviderError(f"OpenAI realtime: {exc}") from exc
        except Exception as exc:  # the connection closed with an error
            if self.closing and self._drained:
                return
            raise ProviderError(f"OpenAI dropped the session: {exc}") from exc

    def _read(self, event: Any) -> TranscriptionEvent | None:
        kind = _field(event, "type", "")
        item = _field(event, "item_id")
        if kind == "input_audio_buffer.speech_started":
            self.spans[item] = [_field(event, "audio_start_ms", 0) / 1000, self.sent_seconds]
        elif kind == "input_audio_buffer.speech_stopped":
            span = self.spans.setdefault(item, [self.committed_upto, 0.0])
            span[1] = _field(event, "audio_end_ms", 0) / 1000
        elif kind == "input_audio_buffer.committed":
            if item not in self.spans:  # not cut by the server's voice detection: our commit
                self.commits_awaited = max(0, self.commits_awaited - 1)
            span = self.spans.setdefault(item, [self.committed_upto, self.sent_seconds])
            if not span[1]:
                span[1] = self.sent_seconds
            self.committed_upto = max(self.committed_upto, span[1])
            self.pending.add(item)
        elif kind == "conversation.item.input_audio_transcription.delta":
            self.text[item] = self.text.get(item, "") + (_field(event, "delta") or "")
            start, end = self.spans.get(item, [self.committed_upto, self.sent_seconds])
            return Transcript(self.text[item], False, start, end or self.sent_seconds)
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.pending.discard(item)
            usage = _field(event, "usage")
            if usage is not None and _field(usage, "type") == "duration":
                self.usage_seconds += float(_field(usage, "seconds", 0))
            start, end = self.spans.get(item, [self.committed_upto, self.sent_seconds])
            return Transcript(_field(event, "transcript") or "", True, start, end)
        elif kind == "conversation.item.input_audio_transcription.failed":
            self.pending.discard(item)  # that item is lost (and not charged: no final)
        elif kind == "error":
            error = _field(event, "error")
            code = _field(error, "code") or ""
            if code == "input_audio_buffer_commit_empty":
                self.commits_awaited = max(0, self.commits_awaited - 1)
                return None
            raise ProviderError(f"OpenAI realtime: {_field(error, 'message') or code}")
        return None


class OpenAISpeechProvider(TranscriptionProvider, BatchTranscriptionProvider):
    name = "openai"

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float = 600,
        max_retries: int = 2,
    ) -> None:
        self.timeout = timeout
        self._client = (
            AsyncOpenAI(
                api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
            )
            if api_key
            else None
        )

    @property
    def available(self) -> bool:
        return self._client is not None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def open(self, options: TranscriptionOptions) -> TranscriptionSession:
        if self._client is None:
            raise ProviderError("OpenAI is not configured")
        manager = self._client.realtime.connect(extra_query={"intent": "transcription"})
        try:
            async with asyncio.timeout(min(self.timeout, 30)):
                connection = await manager.enter()
        except TimeoutError as exc:
            raise ProviderTimeout("OpenAI did not answer in time") from exc
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            status = status or getattr(exc, "status_code", None)
            raise STATUS_ERRORS.get(status or 0, ProviderError)(
                f"OpenAI refused the session: {exc}"
            ) from exc
        transcription: dict[str, Any] = {"model": options.model}
        if options.language:
            transcription["language"] = options.language
        session = OpenAIRealtimeSession(connection, manager, options.sample_rate)
        await session._send(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
                            "transcription": transcription,
                            "turn_detection": {"type": "server_vad"},
                        }
                    },
                },
            }
        )
        return session

    async def transcribe(self, request: BatchRequest) -> BatchTranscript:
        if self._client is None:
            raise ProviderError("OpenAI is not configured")
        extra: dict[str, Any] = {}
        if request.language:
            extra["language"] = request.language
        if request.prompt:
            extra["prompt"] = request.prompt
        try:
            result = await self._client.audio.transcriptions.create(
                file=(request.filename, request.audio),
                model=request.model,
                response_format="json",
                **extra,
            )
        except openai.APITimeoutError as exc:
            raise ProviderTimeout("OpenAI did not answer in time") from exc
        except openai.APIStatusError as exc:
            raise STATUS_ERRORS.get(exc.status_code, ProviderError)(exc.message) from exc
        except openai.APIError as exc:
            raise ProviderError(str(exc)) from exc
        usage = getattr(result, "usage", None)
        seconds = float(usage.seconds) if usage is not None and usage.type == "duration" else None
        return BatchTranscript(text=result.text, audio_seconds=seconds, language=request.language)
