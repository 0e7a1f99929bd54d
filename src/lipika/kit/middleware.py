"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs on streaming paths)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping

import structlog
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipika.errors import PayloadTooLarge, error_response
from lipika.kit import access

log = structlog.get_logger("lipika.access")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Binds a request id (the client's `X-Request-ID` if sane) to logs and the response, and
    writes the access-log line and the request metrics when the response has ended.

    The line carries what the request's access record gathered (kit/access.py): workspace,
    member and API key, model, tokens, credits charged, outcome and time to first token. The
    metrics come from the lifespan's `metrics` (absent in an app built without one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        metrics = scope.get("state", {}).get("metrics")
        started = time.perf_counter()
        status = 500
        stream_kind: str | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, stream_kind
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
                if metrics is not None and _is_event_stream(message["headers"]):
                    stream_kind = "sse"
                    metrics.open_streams.labels(stream_kind).inc()
            elif message["type"] == "websocket.accept":
                status = 101
                if metrics is not None:
                    stream_kind = "websocket"
                    metrics.open_streams.labels(stream_kind).inc()
            await send(message)

        with access.recording() as record:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                method = scope.get("method", "WS")
                if stream_kind is not None:
                    metrics.open_streams.labels(stream_kind).dec()
                if metrics is not None:
                    metrics.request_done(method, _route_template(scope), status, seconds)
                log.info(
                    "request",
                    method=method,
                    path=scope["path"],
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                    **record,
                )


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in headers
    )


def _route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/threads/{thread_id}`), never the raw path, so the
    label set stays bounded; `unmatched` for paths no route serves."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413 before the app parses them."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, by_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.by_path = dict(by_path or {})  # routes that take larger bodies (file uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.by_path.get(scope["path"], self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked upload): read up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        exc = PayloadTooLarge(f"request body is larger than {limit} bytes", limit_bytes=limit)
        await error_response(exc)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class GZipExceptStreams:
    """GZip for ordinary responses; stream routes bypass it entirely, so no frame waits in a
    compressor and no per-frame wrapper runs. `streams` matches the paths of stream routes."""

    def __init__(self, app: ASGIApp, *, streams: re.Pattern[str], minimum_size: int = 1024) -> None:
        self.app = app
        self.streams = streams
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.streams.match(scope["path"]):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
