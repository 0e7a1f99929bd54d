"""The route class every router uses: requests are parsed strictly, before any handler runs.

- Bodies are parsed with orjson. Python's `json` accepts text that no UTF-8 string can hold (a
  lone surrogate such as `"\\ud800"`), which then fails deep inside a handler, as a 500, when it
  is encoded for a database or a provider; orjson refuses it, and invalid UTF-8, at the door.
  Its decode error is a `json.JSONDecodeError`, so FastAPI answers it as malformed JSON (422).
  It is also several times faster on the hot path.
- Text may not hold NUL characters (`\\u0000` in a body, `%00` in a query string): PostgreSQL
  stores no NUL in text or JSONB, so such a value would fail at the database instead.

A dependency may also watch how the request ends (`add_response_hook`: told the response, or
the error it ended with, before it is rendered) or answer it at once (`raise AnswerNow(...)`):
idempotency keys store and replay answers this way.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from lipika.errors import LipikaError

_NUL_ESCAPE = b"\\u0000"


class MalformedQuery(LipikaError):
    status_code = 422
    code = "validation_error"


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            parsed = orjson.loads(body)
            if _NUL_ESCAPE in body and (where := _nul_path(parsed)) is not None:
                raise json.JSONDecodeError(
                    f"text may not contain NUL characters (at {where})", body.decode(), 0
                )
            self._json = parsed
        return self._json


class ResponseHook(Protocol):
    """Told how a request ended, once its dependencies have exited (its database session is
    committed or rolled back) and before its answer reaches the client."""

    async def answered(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> None:
        """The answer: its whole body, or None for a stream (told as it starts)."""

    async def failed(self, exc: BaseException) -> None:
        """The handler (or a dependency) raised `exc`, which is rendered next."""

    async def abandoned(self) -> None:
        """The answer could not be sent whole."""


class AnswerNow(Exception):  # noqa: N818 - not an error: an answer
    """Raised by a dependency to answer the request with `response` (the handler never runs)."""

    def __init__(self, response: Response) -> None:
        super().__init__("answered by a dependency")
        self.response = response


_HOOKS = "lipika.response_hooks"
# FastAPI's per-request exit stack: it unwinds after the dependencies' (`scope="function"`)
# stack, so callbacks on it run once the session has committed or rolled back.
_REQUEST_STACK = "fastapi_inner_astack"


def add_response_hook(request: Request, hook: ResponseHook) -> None:
    """`hook` is told how this request ends (see the module)."""
    request.scope.setdefault(_HOOKS, []).append(hook)


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if b"%00" in request.scope.get("query_string", b""):
                raise MalformedQuery("query parameters may not contain NUL characters")
            try:
                response = await handler(StrictJSONRequest(request.scope, request.receive))
            except AnswerNow as answer:
                return answer.response
            except BaseException as exc:
                hooks = request.scope.get(_HOOKS)
                if hooks:
                    await _after_dependencies(request.scope, _tell_failed(hooks, exc))
                raise
            hooks = request.scope.get(_HOOKS)
            return _HeldBack(response, hooks) if hooks else response

        return strict


def _tell_failed(hooks: list[ResponseHook], exc: BaseException) -> Callable[[], Awaitable[None]]:
    async def tell() -> None:
        for hook in hooks:
            await hook.failed(exc)

    return tell


async def _after_dependencies(scope: Scope, callback: Callable[[], Awaitable[None]]) -> None:
    stack = scope.get(_REQUEST_STACK)
    if stack is None:
        await callback()
    else:
        stack.push_async_callback(callback)


class _HeldBack(Response):
    """A hooked request's answer: sent (after the dependencies exited, as every response is)
    only once its hooks were told it; a stream's as it starts."""

    def __init__(self, response: Response, hooks: list[ResponseHook]) -> None:
        self.response = response
        self.hooks = hooks
        self.status_code = response.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []
        told = False

        async def hold_back(message: Message) -> None:
            nonlocal start, told
            if told:
                await send(message)
                return
            if message["type"] == "http.response.start":
                start = message
                content_type = dict(message.get("headers", ())).get(b"content-type", b"")
                if content_type.startswith(b"text/event-stream"):
                    told = True
                    for hook in self.hooks:
                        await hook.answered(message["status"], list(message["headers"]), None)
                    await send(message)
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            told = True
            for hook in self.hooks:
                await hook.answered(start["status"], list(start.get("headers", ())), body)
            await send(start)
            await send({"type": "http.response.body", "body": body})

        try:
            await self.response(scope, receive, hold_back)
        except BaseException:
            if not told:
                for hook in self.hooks:
                    await hook.abandoned()
            raise


def api_router(**kwargs: Any) -> APIRouter:
    """An `APIRouter` whose routes parse their requests strictly (every router of the app)."""
    return APIRouter(route_class=StrictJSONRoute, **kwargs)


def _nul_path(value: Any, path: str = "body") -> str | None:
    """Where the first string (or key) holding a NUL character is, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return path
            if (found := _nul_path(item, f"{path}.{key}")) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _nul_path(item, f"{path}.{index}")) is not None:
                return found
    return None
