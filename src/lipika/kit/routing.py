"""The route class every router uses: requests are parsed strictly, before any handler runs.

- Bodies are parsed with orjson. Python's `json` accepts text that no UTF-8 string can hold (a
  lone surrogate such as `"\\ud800"`), which then fails deep inside a handler, as a 500, when it
  is encoded for a database or a provider; orjson refuses it, and invalid UTF-8, at the door.
  Its decode error is a `json.JSONDecodeError`, so FastAPI answers it as malformed JSON (422).
  It is also several times faster on the hot path.
- Text may not hold NUL characters (`\\u0000` in a body, `%00` in a query string): PostgreSQL
  stores no NUL in text or JSONB, so such a value would fail at the database instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

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


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if b"%00" in request.scope.get("query_string", b""):
                raise MalformedQuery("query parameters may not contain NUL characters")
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


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
