"""Opening a live session: who is calling, which model, the first slice held, the provider's
session opened; then `LiveSession` runs it (speech/live.py).

A WebSocket cannot carry a typed HTTP error to a browser, so every refusal after the handshake
is an `error` event and a close code (4000 + its HTTP status): the socket is accepted first.
"""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError
from starlette.websockets import WebSocket

from lipika.auth.dependencies import Principal, authenticate
from lipika.billing.meter import Meter, Owner
from lipika.billing.pricebook import Price
from lipika.billing.session import outcome_of
from lipika.config import Settings
from lipika.errors import LipikaError, ServiceUnavailable, Unauthorized, is_outage
from lipika.providers.base import ProviderError
from lipika.providers.capabilities import (
    BatchTranscriptionProvider,
    TranscriptionOptions,
    TranscriptionProvider,
)
from lipika.providers.speech import TranscriptionRegistry
from lipika.speech.errors import (
    CredentialsInURL,
    InvalidTicket,
    SpeechModelUnavailable,
    UnknownSpeechModel,
)
from lipika.speech.live import (
    FAILED_CLOSE,
    Limits,
    LiveSession,
    SessionMetrics,
    close,
    close_code,
    error_event,
    send_text,
)
from lipika.speech.schemas import LiveOptions

log = structlog.get_logger()

P = TypeVar("P", TranscriptionProvider, BatchTranscriptionProvider)

SUBPROTOCOL = "lipika.v1"
BEARER_SUBPROTOCOL = "bearer."
# Query parameters that would put a credential in a URL (and so in every proxy's log).
_SECRET_PARAMS = frozenset({"token", "access_token", "api_key", "key", "authorization", "bearer"})


class InvalidOptions(LipikaError):
    status_code = 422
    code = "validation_error"


@dataclass
class Draining:
    """Set when the process was told to stop (SIGTERM, SIGINT): the server then closes every
    socket with 1012, and a session that ends so is settled as the server's shutdown.

    The server's own handlers stay in charge: these only note the signal, tell whoever asked
    (`on_signal`: the job runner hands its jobs over at once, not after the open streams that
    uvicorn waits for have closed), then call them.
    """

    is_set: bool = False
    _previous: dict[int, Any] = field(default_factory=dict)
    _ours: dict[int, Any] = field(default_factory=dict)
    _callbacks: list[Callable[[], None]] = field(default_factory=list)

    def __call__(self) -> bool:
        return self.is_set

    def on_signal(self, callback: Callable[[], None]) -> None:
        """`callback()` runs once, in the signal handler, when the first stop signal arrives."""
        self._callbacks.append(callback)

    def install(self) -> Draining:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread (a test's app)
                previous = signal.getsignal(sig)
                self._previous[sig] = previous
                self._ours[sig] = self._noted(previous)
                signal.signal(sig, self._ours[sig])
        return self

    def _noted(self, previous: Any) -> Callable[[int, FrameType | None], None]:
        def handler(sig: int, frame: FrameType | None) -> None:
            first, self.is_set = not self.is_set, True
            for callback in self._callbacks if first else ():
                try:
                    callback()
                except Exception:  # noqa: BLE001 - the server's own handler must still run
                    log.exception("stop_signal_callback_failed")
            if callable(previous):
                previous(sig, frame)

        return handler

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                if signal.getsignal(sig) is self._ours.get(sig):  # not replaced since
                    signal.signal(sig, previous)
        self._previous.clear()
        self._ours.clear()


def limits_of(settings: Settings) -> Limits:
    return Limits(
        slice_seconds=settings.stt_slice_seconds,
        max_seconds=settings.stt_max_session_seconds,
        idle_seconds=settings.stt_idle_timeout_seconds,
        max_frame_bytes=settings.stt_max_frame_bytes,
        max_lead_seconds=settings.stt_max_lead_seconds,
        close_timeout=settings.stt_close_timeout_seconds,
    )


def speech_model(
    price_book_get: Callable[[str], Price | None],
    providers: Mapping[str, P],
    model: str,
) -> tuple[Price, P]:
    """The `stt.<model>` price and the adapter that serves it: 404 if the price book has no
    such speech model, 503 if its provider is not configured on this server."""
    price = price_book_get(f"stt.{model}")
    if price is None or price.kind != "stt" or price.provider is None:
        raise UnknownSpeechModel(f"speech model {model!r} does not exist", param="model")
    provider = providers.get(price.provider)
    if provider is None or not provider.available:
        raise SpeechModelUnavailable(f"speech model {model!r} is not available on this server")
    return price, provider


def parse_options(query: Mapping[str, str]) -> LiveOptions:
    secret = _SECRET_PARAMS & {name.lower() for name in query}
    if secret:
        raise CredentialsInURL(
            "credentials never go in a URL: use a session ticket (POST "
            "/v1/audio/transcriptions/sessions), the Sec-WebSocket-Protocol bearer entry, or "
            "the Authorization header",
            param=sorted(secret)[0],
        )
    try:
        return LiveOptions.model_validate(dict(query))
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise InvalidOptions(f"{param}: {first.get('msg')}", param=param) from None


def offered_bearer(socket: WebSocket) -> tuple[str | None, str | None]:
    """(the subprotocol to answer with, the bearer token offered in Sec-WebSocket-Protocol)."""
    offered = socket.scope.get("subprotocols") or []
    token = next(
        (p[len(BEARER_SUBPROTOCOL) :] for p in offered if p.startswith(BEARER_SUBPROTOCOL)), None
    )
    return (SUBPROTOCOL if SUBPROTOCOL in offered else None), token


async def caller(socket: WebSocket, options: LiveOptions, bearer: str | None) -> Principal:
    """A ticket, else the bearer token of the subprotocol, else the Authorization header."""
    state = socket.state
    workspace = options.workspace_id or socket.headers.get("x-workspace-id")
    try:
        workspace_id = uuid.UUID(workspace) if workspace else None
    except ValueError:
        raise InvalidOptions("workspace_id: not a UUID", param="workspace_id") from None
    if options.ticket is not None:
        principal = await state.stt_tickets.redeem(options.ticket)
        if principal is None:
            raise InvalidTicket("the session ticket is unknown, used or expired")
        if workspace_id is not None and workspace_id != principal.workspace_id:
            raise InvalidTicket("the session ticket was issued for another workspace")
        return principal
    authorization = f"Bearer {bearer}" if bearer else socket.headers.get("authorization")
    if not authorization:
        raise Unauthorized("missing bearer credentials", code="missing_credentials")
    async with state.sessionmaker() as session:
        return await authenticate(session, state.settings, authorization, workspace_id)


async def serve_live(socket: WebSocket) -> None:
    """The whole life of one live session's socket."""
    state = socket.state
    settings: Settings = state.settings
    meter: Meter = state.meter
    registry: TranscriptionRegistry = state.transcribers
    subprotocol, bearer = offered_bearer(socket)
    try:
        options = parse_options(socket.query_params)
        principal = await caller(socket, options, bearer)
        model = options.model or settings.stt_default_model
        price, provider = speech_model(meter.price_book.get, registry.live, model)
    except LipikaError as exc:
        await refuse(socket, subprotocol, exc)
        return
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.error("dependency_unavailable", error=repr(exc))
        await refuse(socket, subprotocol, ServiceUnavailable("a service is unavailable; retry"))
        return
    await socket.accept(subprotocol=subprotocol)  # counted open by the request middleware
    await _run(socket, settings, meter, principal, price, provider, options, model)


async def refuse(socket: WebSocket, subprotocol: str | None, error: LipikaError) -> None:
    await socket.accept(subprotocol=subprotocol)
    await send_text(socket, error_event(error, fatal=True))
    await close(socket, close_code(error))


async def _run(
    socket: WebSocket,
    settings: Settings,
    meter: Meter,
    principal: Principal,
    price: Price,
    provider: TranscriptionProvider,
    options: LiveOptions,
    model: str,
) -> None:
    limits = limits_of(settings)
    try:
        call = await meter.open_session(
            principal.workspace_id,
            principal.user_id,
            operation="stt.live",
            price=price.name,
            max_usage={"audio_seconds": limits.slice_seconds},
            owner=Owner("stt.session", uuid.uuid4().hex),
        )
    except LipikaError as exc:
        await send_text(socket, error_event(exc, fatal=True))
        await close(socket, close_code(exc))
        return
    webm = options.encoding != "pcm16"
    takes_format = webm and options.encoding in provider.accepts
    # WebM/Opus is decoded (to count it, and for providers that take only PCM) at 16 kHz.
    rate = 16_000 if webm else options.sample_rate
    opened = TranscriptionOptions(
        model=model,
        audio_format=options.encoding if takes_format else "pcm16",
        sample_rate=rate,
        language=options.language,
        interim_results=options.interim_results,
    )
    try:
        upstream = await provider.open(opened)
    except BaseException as exc:
        await call.settle(outcome_of(exc, produced_output=False))
        if not isinstance(exc, ProviderError):
            raise
        log.warning("speech provider refused the session", model=price.name, error=repr(exc))
        failure = LipikaError(str(exc) or "the transcription provider failed", code=exc.code)
        failure.status_code = exc.status_code
        failure.type = "api_error"
        await send_text(socket, error_event(failure, fatal=True))
        await close(socket, FAILED_CLOSE)
        return
    session = LiveSession(
        socket=socket,
        call=call,
        upstream=upstream,
        options=TranscriptionOptions(
            model=model,
            audio_format=options.encoding,
            sample_rate=rate,
            language=options.language,
            interim_results=options.interim_results,
        ),
        limits=limits,
        provider_takes_format=takes_format,
        draining=getattr(socket.state, "draining", lambda: False),
        metrics=_session_metrics(socket),
        sku=price.name,
    )
    await session.run()


def _session_metrics(socket: WebSocket) -> SessionMetrics:
    metrics = getattr(socket.state, "metrics", None)
    if metrics is None or not hasattr(metrics, "speech_audio_seconds"):
        return SessionMetrics()
    return SessionMetrics(
        audio=lambda model, seconds: metrics.speech_audio_seconds.labels(model).inc(seconds),
        ended=lambda model, outcome: metrics.speech_sessions.labels(model, outcome).inc(),
    )
