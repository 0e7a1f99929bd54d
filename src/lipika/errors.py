"""One error base with an HTTP status and a stable machine-readable code, and its handlers.

Every error leaves the API in one JSON shape, compatible with OpenAI's error body so that
OpenAI SDK clients surface our messages:

    {"error": {"type": "...", "code": "...", "message": "...", "param": null, "details": {...}}}
"""

from __future__ import annotations

from typing import Any

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

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        return error_body(
            type_=self.type, code=self.code, message=self.message, details=self.details
        )


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


def error_body(
    *, type_: str, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "code": code, "message": message, "param": None}
    if details:
        body["details"] = details
    return {"error": body}


def error_response(exc: LipikaError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        exc.body(),
        status_code=exc.status_code,
        headers=headers,
    )


_HTTP_CODES = {
    404: ("not_found", "not_found_error"),
    405: ("method_not_allowed", "invalid_request_error"),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LipikaError)
    async def _lipika(_: Request, exc: LipikaError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return error_response(exc, headers)

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
        # the id bound for this request's logs is added here.
        log.exception("unhandled_error", error=repr(exc))
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        return JSONResponse(
            error_body(type_="api_error", code="internal_error", message="internal server error"),
            status_code=500,
            headers={"x-request-id": request_id} if request_id else None,
        )
