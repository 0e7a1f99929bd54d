"""One real-time speech session: audio frames in from the client, relayed to the provider,
transcripts out in one event shape, metered slice by slice through one metering session.

Two tasks share the socket: the reader takes the client's frames (audio, control messages)
and hands audio to the provider, the writer relays the provider's events. Metering:

- admission held the first slice of audio (`LIPIKA_STT_SLICE_SECONDS`) at the frozen price;
  before audio past the held seconds is sent, the hold grows by another slice (`extend`), and
  when it cannot, the audio is cut exactly at the boundary and the session ends;
- at the end the hold is captured for the audio transcribed, by the charge policy's row for
  how the session ended (see `charged_seconds`);
- whatever escapes (a cancellation) leaves the metering session, which settles it as the
  client's hang-up with the audio streamed so far (`report_units` keeps that current).

Limits: a per-session maximum of audio, an idle timeout (no audio for N seconds ends the
session and settles it), a maximum frame size, and back-pressure: audio may run at most
`LIPIKA_STT_MAX_LEAD_SECONDS` ahead of the wall clock; past that the reader stops reading, so
the client's socket fills and its sends wait. A bad frame or message is answered with a
non-fatal `error` event, and the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

import orjson
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from lipika.billing.meter import Settlement
from lipika.billing.policy import Outcome
from lipika.billing.session import MeteredCall
from lipika.db import utcnow
from lipika.errors import LipikaError, ServiceUnavailable, is_outage
from lipika.kit.audio import SAMPLE_WIDTH, LiveDecoder, UnreadableAudio
from lipika.providers.base import ProviderError, ProviderTimeout
from lipika.providers.capabilities import (
    PCM16,
    Transcript,
    TranscriptionOptions,
    TranscriptionSession,
    TranscriptionUsage,
)
from lipika.speech.errors import FrameTooLarge, MalformedFrame, MalformedMessage, UnknownControl

log = structlog.get_logger()

# Close codes after the terminal event: 1000 after `done`; 4000 + the HTTP status of a typed
# refusal (4402: no credits for the next slice); 1011 when the provider or the server failed.
NORMAL_CLOSE = 1000
FAILED_CLOSE = 1011
SERVICE_RESTART = 1012  # what the server sends every socket when it shuts down


def close_code(error: LipikaError) -> int:
    return 4000 + error.status_code if error.status_code < 500 else FAILED_CLOSE


def error_event(error: LipikaError, *, fatal: bool) -> dict[str, Any]:
    return {"type": "error", "fatal": fatal, **error.body()}


class End(enum.StrEnum):
    """Why the reader stopped taking audio."""

    CLOSED = "closed"  # the client sent `close`
    IDLE = "idle_timeout"
    MAX_DURATION = "max_duration"
    REFUSED = "refused"  # the next slice could not be held
    GONE = "gone"  # the client's socket closed, with or without a close frame


@dataclass(frozen=True, slots=True)
class Limits:
    slice_seconds: int
    max_seconds: int
    idle_seconds: float
    max_frame_bytes: int
    max_lead_seconds: float
    close_timeout: float


@dataclass
class SessionMetrics:
    """What a session tells the metrics (ops/metrics.py), as plain callbacks."""

    audio: Callable[[str, float], None] = lambda model, seconds: None
    ended: Callable[[str, str], None] = lambda model, outcome: None


@dataclass
class LiveSession:
    socket: WebSocket
    call: MeteredCall
    upstream: TranscriptionSession
    options: TranscriptionOptions
    limits: Limits
    provider_takes_format: bool  # else the audio is decoded to PCM16 first
    draining: Callable[[], bool] = lambda: False  # the server is shutting down
    metrics: SessionMetrics = field(default_factory=SessionMetrics)
    sku: str = ""
    # -- counted as the session runs ---------------------------------------------------------
    covered: int = 0  # audio seconds the hold covers
    sent_samples: int = 0  # audio handed to the provider (our measurement), in samples
    reported: float | None = None  # the provider's own count, when it gave one
    delivered_final_end: float = 0.0  # where the last final segment delivered to the client ends
    refusal: LipikaError | None = None
    charged: int = 0  # audio seconds charged at the settlement
    _started: float = field(default_factory=time.monotonic)
    _last_audio: float = field(default_factory=time.monotonic)
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _decoder: LiveDecoder | None = None
    _gone_code: int | None = None
    _renew_margin: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        self.covered = self.limits.slice_seconds
        # A hold with less than half its lifetime left is renewed (extended by nothing), so
        # reconciliation never releases the hold of a session that is still running.
        self._renew_margin = self._time_left() / 2

    def _time_left(self) -> timedelta:
        expires = self.call.ticket.expires_at
        if expires.tzinfo is None:  # SQLite hands datetimes back naive (they are UTC)
            expires = expires.replace(tzinfo=UTC)
        return expires - utcnow()

    @property
    def sent(self) -> float:
        """Audio seconds handed to the provider."""
        return self.sent_samples / self.options.sample_rate

    # -- the whole session -------------------------------------------------------------------

    async def run(self) -> None:
        async with self.call:
            await self._send(
                {
                    "type": "ready",
                    "model": self.sku,
                    "encoding": self.options.audio_format,
                    "sample_rate": self.options.sample_rate,
                    "slice_seconds": self.limits.slice_seconds,
                    "max_seconds": self.limits.max_seconds,
                }
            )
            if self.options.audio_format != PCM16:
                self._decoder = LiveDecoder(self.options.sample_rate)
            writer = asyncio.create_task(self._relay_events(), name="stt-writer")
            reader = asyncio.create_task(self._read_client(), name="stt-reader")
            try:
                await self._until_the_end(reader, writer)
            except Exception as exc:  # ours (a database outage...): free, by the charge policy
                log.exception("speech session failed", model=self.sku)
                failure = (
                    ServiceUnavailable("a service this session needs is unavailable; retry")
                    if is_outage(exc)
                    else LipikaError("the session failed on our side", code="internal_error")
                )
                failure.type = "api_error"
                with contextlib.suppress(Exception):  # else the hold waits for reconciliation
                    await self.call.settle(Outcome.INTERNAL_ERROR)
                await self._finish(error_event(failure, fatal=True), FAILED_CLOSE)
            finally:
                for task in (reader, writer):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                if self._decoder is not None:
                    self._decoder.close()

    async def _until_the_end(self, reader: asyncio.Task[End], writer: asyncio.Task[None]) -> None:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if not reader.done():  # the provider's events ended or failed first
            reader.cancel()
            await self._provider_failed(writer)
            return
        if reader.exception() is not None:
            exc = reader.exception()
            if isinstance(exc, ProviderError):
                # What the provider sent before it failed is still relayed (and charged).
                await asyncio.wait({writer}, timeout=self.limits.close_timeout)
                writer.cancel()
                await self._provider_failed(None, exc)
                return
            if isinstance(exc, _ClientGone):  # a write to it failed: it is gone
                writer.cancel()
                await self.upstream.abort()
                await self._settle(self._gone_outcome())
                return
            raise exc  # type: ignore[misc]  (the metering session settles it)
        end = reader.result()
        if end is End.GONE:
            writer.cancel()
            await self.upstream.abort()
            await self._settle(self._gone_outcome())
            return
        # A graceful end: the provider flushes its last finals and usage, the writer relays them.
        try:
            async with asyncio.timeout(self.limits.close_timeout):
                await self.upstream.aclose()
                await writer
        except TimeoutError:
            await self._provider_failed(None, ProviderTimeout("the provider did not flush in time"))
            return
        except ProviderError as exc:
            await self._provider_failed(None, exc)
            return
        except _ClientGone:
            await self._settle(self._gone_outcome())
            return
        settlement = await self._settle(Outcome.SUCCESS)
        await self._usage(settlement)
        if end is End.REFUSED and self.refusal is not None:
            await self._finish(error_event(self.refusal, fatal=True), close_code(self.refusal))
        else:
            await self._finish({"type": "done", "reason": end.value}, NORMAL_CLOSE)

    def _gone_outcome(self) -> Outcome:
        """The client's socket closed: the server's shutdown (1012, or a SIGTERM noted), or the
        client leaving."""
        shutdown = self.draining() or self._gone_code == SERVICE_RESTART
        return Outcome.SERVER_SHUTDOWN if shutdown else Outcome.CLIENT_DISCONNECT

    async def _provider_failed(
        self, writer: asyncio.Task[None] | None, exc: BaseException | None = None
    ) -> None:
        if writer is not None:
            exc = writer.exception() if not writer.cancelled() else None
            if isinstance(exc, _ClientGone):
                await self.upstream.abort()
                await self._settle(self._gone_outcome())
                return
            if exc is None:  # the provider ended the session without being asked to
                exc = ProviderError("the provider ended the session")
        await self.upstream.abort()
        if not isinstance(exc, ProviderError):
            raise exc or RuntimeError("the session ended without a cause")
        log.warning("speech provider failed", model=self.sku, error=repr(exc))
        settlement = await self._settle(Outcome.PROVIDER_ERROR_MID_SESSION)
        await self._usage(settlement)
        failure = LipikaError(
            str(exc) or "the transcription provider failed", code=exc.code, retryable=True
        )
        failure.status_code = exc.status_code
        failure.type = "api_error"
        await self._finish(error_event(failure, fatal=True), FAILED_CLOSE)

    # -- metering ----------------------------------------------------------------------------

    def charged_seconds(self, outcome: Outcome) -> int:
        """The audio charged, by the charge policy's speech rows: on success the provider's
        count where it gave one, never more than we sent; on the client's hang-up the audio it
        streamed; on a provider failure or our shutdown the finals delivered. Never more than
        the hold, and rounded up to a whole second."""
        if outcome in (Outcome.PROVIDER_ERROR_MID_SESSION, Outcome.SERVER_SHUTDOWN):
            seconds = min(self.delivered_final_end, self.sent)
        elif outcome is Outcome.SUCCESS and self.reported is not None:
            seconds = min(self.reported, self.sent)
        else:
            seconds = self.sent
        return min(math.ceil(round(seconds, 6)), self.covered)

    async def _settle(self, outcome: Outcome) -> Settlement:
        usage = {"audio_seconds": self.charged_seconds(outcome)}
        self.charged = usage["audio_seconds"]
        settlement = await self.call.settle(outcome, usage=usage, usage_so_far=usage)
        self.metrics.ended(self.sku, outcome.value)
        return settlement

    def _note_sent(self, samples: int) -> None:
        before = math.ceil(self.sent)
        self.sent_samples += samples
        self.metrics.audio(self.sku, samples / self.options.sample_rate)
        if math.ceil(self.sent) != before:  # what a cancellation would charge (the session)
            self.call.report_units({"audio_seconds": min(math.ceil(self.sent), self.covered)})

    async def _allow(self, samples: int) -> int:
        """How many of the next `samples` may be sent: the hold grows a slice when the audio
        passes what it covers; a refusal (or the session's maximum) cuts it exactly there."""
        rate = self.options.sample_rate
        allowed = min(samples, self.limits.max_seconds * rate - self.sent_samples)
        if self._time_left() < self._renew_margin:
            # audio trickling in slower than real time: keep the hold alive, at no cost
            with contextlib.suppress(LipikaError):
                await asyncio.shield(self.call.extend({"audio_seconds": 0}))
        while self.sent_samples + allowed > self.covered * rate:
            try:
                # Shielded: a session ended while it grows its hold (the provider dropped) must
                # not cut the ledger's transaction short; the hold is settled after it anyway.
                await asyncio.shield(self.call.extend({"audio_seconds": self.limits.slice_seconds}))
            except LipikaError as exc:
                self.refusal = exc
                return max(0, self.covered * rate - self.sent_samples)
            self.covered += self.limits.slice_seconds
        return allowed

    @property
    def _at_the_end(self) -> End | None:
        if self.refusal is not None:
            return End.REFUSED
        if self.sent_samples >= self.limits.max_seconds * self.options.sample_rate:
            return End.MAX_DURATION
        return None

    # -- client to provider ------------------------------------------------------------------

    async def _read_client(self) -> End:
        end = await self._read_until_the_end()
        if end in (End.CLOSED, End.IDLE) and self._decoder is not None:
            self._decoder.end()  # what is still being decoded is sent and counted too
            return await self._decoded(wait=None) or end
        return end

    async def _read_until_the_end(self) -> End:
        while True:
            message = await self._receive()
            if message is None:
                return End.IDLE
            if message["type"] == "websocket.disconnect":
                self._gone_code = message.get("code")
                return End.GONE
            if message.get("bytes") is not None:
                end = await self._audio(message["bytes"])
                if end is not None:
                    return end
            elif message.get("text") is not None:
                end = await self._control(message["text"])
                if end is not None:
                    return end

    async def _receive(self) -> dict[str, Any] | None:
        """The next message, or None when no audio came for the idle timeout."""
        left = self.limits.idle_seconds - (time.monotonic() - self._last_audio)
        if left <= 0:
            return None
        try:
            async with asyncio.timeout(left):
                return await self.socket.receive()
        except TimeoutError:
            return None

    async def _audio(self, frame: bytes) -> End | None:
        if len(frame) > self.limits.max_frame_bytes:
            await self._reject(
                FrameTooLarge(
                    f"an audio frame may hold at most {self.limits.max_frame_bytes} bytes",
                    size=len(frame),
                )
            )
            return None
        if not frame:
            return None
        self._last_audio = time.monotonic()
        if self._decoder is None:
            if len(frame) % 2:
                await self._reject(
                    MalformedFrame("a PCM16 frame holds whole 16-bit samples: an even byte count")
                )
                return None
            return await self._forward_pcm(frame)
        return await self._forward_encoded(frame)

    async def _forward_pcm(self, pcm: bytes) -> End | None:
        allowed = await self._allow(len(pcm) // SAMPLE_WIDTH)
        pcm = pcm[: allowed * SAMPLE_WIDTH]
        if pcm:
            await self.upstream.send(pcm)
            self._note_sent(allowed)
        if (end := self._at_the_end) is not None:
            return end
        await self._pace()
        return None

    async def _forward_encoded(self, frame: bytes) -> End | None:
        """WebM/Opus: decoded as it comes, to count it; the provider gets the frame as it is
        when it takes the format, else the decoded PCM16."""
        assert self._decoder is not None
        self._decoder.feed(frame)
        if self.provider_takes_format:
            await self.upstream.send(frame)
        return await self._decoded(wait=0.05)

    async def _decoded(self, wait: float | None) -> End | None:
        """Sends and counts the PCM decoded so far (the decoder runs a little behind its
        input): what comes within `wait` seconds, or (None) all of it, to the stream's end."""
        assert self._decoder is not None
        while True:
            try:
                async with asyncio.timeout(wait):
                    pcm = await self._decoder.pcm()
            except TimeoutError:
                return None
            except UnreadableAudio as exc:
                await self._reject(exc)
                self.refusal = exc
                return End.REFUSED
            if pcm is None:
                return None
            allowed = await self._allow(len(pcm) // SAMPLE_WIDTH)
            pcm = pcm[: allowed * SAMPLE_WIDTH]
            if pcm and not self.provider_takes_format:
                await self.upstream.send(pcm)
            self._note_sent(allowed)
            if (end := self._at_the_end) is not None:
                return end
            await self._pace()

    async def _pace(self) -> None:
        """Back-pressure: audio may lead the wall clock by `max_lead_seconds`, no more."""
        lead = self.sent - (time.monotonic() - self._started) - self.limits.max_lead_seconds
        if lead > 0:
            await asyncio.sleep(lead)
            self._last_audio = time.monotonic()

    async def _control(self, text: str) -> End | None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self._reject(MalformedMessage("a control message is a JSON object"))
            return None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "close":
            return End.CLOSED
        if kind == "finalize":
            await self.upstream.finalize()
            return None
        if kind == "keepalive":
            return None
        await self._reject(
            UnknownControl(
                "control messages are {'type': 'finalize'}, {'type': 'close'} and "
                "{'type': 'keepalive'}",
                received=str(kind)[:40] if kind is not None else None,
            )
        )
        return None

    async def _reject(self, error: LipikaError) -> None:
        await self._send(error_event(error, fatal=False))

    # -- provider to client ------------------------------------------------------------------

    async def _relay_events(self) -> None:
        async for event in self.upstream.events():
            if isinstance(event, Transcript):
                if not event.text:  # silence: nothing to show, but a final still covers it
                    if event.final:
                        self.delivered_final_end = max(self.delivered_final_end, event.end)
                    continue
                await self._send(
                    {
                        "type": "final" if event.final else "interim",
                        "text": event.text,
                        "start": round(event.start, 3),
                        "end": round(event.end, 3),
                    }
                )
                if event.final:
                    self.delivered_final_end = max(self.delivered_final_end, event.end)
            elif isinstance(event, TranscriptionUsage):
                self.reported = max(self.reported or 0.0, event.audio_seconds)

    # -- writing -----------------------------------------------------------------------------

    async def _send(self, event: dict[str, Any]) -> None:
        async with self._send_lock:
            try:
                await self.socket.send_text(orjson.dumps(event).decode())
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                raise _ClientGone() from exc

    async def _usage(self, settlement: Settlement) -> None:
        with contextlib.suppress(_ClientGone):
            await self._send(
                {
                    "type": "usage",
                    "audio_seconds": round(self.sent, 3),
                    "charged_seconds": self.charged,
                    "credits_charged": settlement.charged,
                    "balance_after": settlement.balance_after,
                }
            )

    async def _finish(self, event: dict[str, Any], code: int) -> None:
        with contextlib.suppress(_ClientGone):
            await self._send(event)
        await close(self.socket, code)


class _ClientGone(Exception):
    """A write to the client failed: it is gone."""


async def close(socket: WebSocket, code: int) -> None:
    if socket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await socket.close(code)


async def send_text(socket: WebSocket, event: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        await socket.send_text(orjson.dumps(event).decode())
