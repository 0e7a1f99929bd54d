"""One error base with an HTTP status and a stable machine-readable code, and its handlers.

Every error leaves the API in one JSON shape, compatible with OpenAI's error body so that
OpenAI SDK clients surface our messages:

    {"error": {"type": "...", "code": "...", "message": "...", "param": null, "details": {...}}}
"""

from __future__ import annotations

import math
from typing import Any

import asyncpg
import psycopg
import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger()


class LipikaError(Exception):
    """Base of every error the API returns on purpose."""

    status_code = 400
    code = "bad_request"
    type = "invalid_request_error"
    keep_changes = False
    # Seconds after which the same request may succeed: sent as `Retry-After` when set.
    retry_after: float | None = None
    # Sent as `x-should-retry` when set: SDKs (OpenAI's, Anthropic's) retry 408, 409, 429 and
    # 5xx on their own unless told not to; a refusal that cannot succeed on retry says `false`.
    should_retry: bool | None = None
    # The request field the error is about (OpenAI's `param`), e.g. "messages[1].content".
    param: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after
        if param is not None:
            self.param = param
        self.details = details

    def body(self) -> dict[str, Any]:
        body = error_body(
            type_=self.type, code=self.code, message=self.message, details=self.details
        )
        body["error"]["param"] = self.param
        return body

    def headers(self) -> dict[str, str]:
        headers = {"WWW-Authenticate": "Bearer"} if self.status_code == 401 else {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        return headers


class BadRequest(LipikaError):
    pass


class Unauthorized(LipikaError):
    status_code = 401
    code = "unauthorized"
    type = "authentication_error"


class Forbidden(LipikaError):
    status_code = 403
    code = "forbidden"
    type = "permission_error"


class NotFound(LipikaError):
    status_code = 404
    code = "not_found"
    type = "not_found_error"


class Conflict(LipikaError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(LipikaError):
    status_code = 413
    code = "payload_too_large"


class ServiceUnavailable(LipikaError):
    """Something the request needs is down or saturated; the same request may work later."""

    status_code = 503
    code = "service_unavailable"
    type = "api_error"
    retry_after = 5


# Failures of what the app depends on (Redis, the databases, the network to them), wherever in
# a request they surface: a retryable 503, never a 500. Connect failures reach us as the
# drivers' own errors or as bare OSErrors (asyncpg, redis-py); the rest come wrapped by
# SQLAlchemy, which marks a lost connection `connection_invalidated`.
OUTAGES: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # the pool's checkout timeout
    sqlalchemy.exc.DisconnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,  # server shutting down, statement timeout
    asyncpg.InterfaceError,
    psycopg.OperationalError,  # also psycopg_pool's PoolTimeout
    psycopg.InterfaceError,
    OSError,
)


def is_outage(exc: BaseException) -> bool:
    """Whether the error, or the driver error that SQLAlchemy wrapped (e.g. asyncpg's "too
    many clients" arrives as a plain DBAPIError), is an outage."""
    seen: BaseException | None = exc
    for _ in range(4):  # the wrapper, the adapted driver error, the driver's own
        if seen is None:
            return False
        if isinstance(seen, OUTAGES) or getattr(seen, "connection_invalidated", False):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def error_body(
    *, type_: str, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "code": code, "message": message, "param": None}
    if details:
        body["details"] = details
    return {"error": body}


def error_response(exc: LipikaError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())


_HTTP_CODES = {
    404: ("not_found", "not_found_error"),
    405: ("method_not_allowed", "invalid_request_error"),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LipikaError)
    async def _lipika(_: Request, exc: LipikaError) -> JSONResponse:
        return error_response(exc)

    async def _outage(_: Request, exc: Exception) -> JSONResponse:
        if not is_outage(exc):
            raise exc  # e.g. an IntegrityError: a bug, for the unhandled-error handler
        log.error("dependency_unavailable", error=repr(exc), exc_info=exc)
        return error_response(
            ServiceUnavailable("a service this request needs is unavailable; retry shortly")
        )

    for outage in (*OUTAGES, sqlalchemy.exc.DBAPIError):
        app.add_exception_handler(outage, _outage)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        first = exc.errors()[0] if exc.errors() else {}
        malformed_json = first.get("type") == "json_invalid"
        if malformed_json:
            reason = (first.get("ctx") or {}).get("error")
            message = "request body is not valid JSON" + (f": {reason}" if reason else "")
            param = None
        else:
            param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
            message = f"{param or 'request'}: {first.get('msg', 'invalid value')}"
        body = error_body(
            type_="invalid_request_error",
            code="malformed_json" if malformed_json else "validation_error",
            message=message,
            details={"errors": errors},
        )
        body["error"]["param"] = param
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, type_ = _HTTP_CODES.get(exc.status_code, ("http_error", "invalid_request_error"))
        return JSONResponse(
            error_body(type_=type_, code=code, message=str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
        # Rendered by Starlette's outermost middleware, outside our request-id middleware, so
        # the id bound for this request's logs is added here. Starlette re-raises after this
        # response and the server then drops the connection: `Connection: close` tells a
        # keep-alive client so, and its next request opens a new connection instead of failing.
        log.exception("unhandled_error", error=repr(exc))
        headers = {"connection": "close"}
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            headers["x-request-id"] = request_id
        return JSONResponse(
            error_body(type_="api_error", code="internal_error", message="internal server error"),
            status_code=500,
            headers=headers,
        )
