"""The OpenAPI document as clients need it.

FastAPI's default describes errors as its own `{"detail": ...}` and its 422 shape, names
operations after path and method, and cannot see what a stream sends. Here every operation
documents the error responses it can give with the API's one error shape, operation ids are
the endpoint functions' names (stable across refactors of paths), the bearer credential is a
security scheme (declared by `auth.dependencies.bearer_scheme`), and the stream frames are
schemas of their own (`ChatCompletionChunk`, `ThreadEvent`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter

from lipika.chat.schemas import ChatCompletionChunk
from lipika.threads.schemas import ThreadEvent

REF = "#/components/schemas/{model}"


class ErrorObject(BaseModel):
    type: str = Field(description="the error's family, as OpenAI names them")
    code: str = Field(description="stable, machine-readable")
    message: str = Field(description="for people: the cause and, where there is one, the fix")
    param: str | None = Field(description="the request field at fault, if one is")
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """Every error the API returns, whatever the status."""

    error: ErrorObject


# Documented where they can happen (every operation may also answer 500 and 503).
_WHY = {
    "400": "refused: the request is understood but not acceptable (see `code`)",
    "401": "missing, invalid or revoked credentials",
    "402": "not enough credits for the most this can cost",
    "403": "the role, the plan or an unverified address does not allow it",
    "404": "no such resource in the caller's workspace (also for another workspace's)",
    "409": "conflicts with the current state (see `code`)",
    "413": "the request body is too large",
    "422": "malformed JSON or a field out of its range (`param` names it)",
    "429": "a limit is reached; `Retry-After` says when to try again",
    "500": "our failure; nothing was charged",
    "503": "a dependency or the provider is unavailable; `Retry-After` when retrying helps",
}
_STREAM_SCHEMAS: dict[str, Any] = {
    "ChatCompletionChunk": ChatCompletionChunk,
    "ThreadEvent": ThreadEvent,
}
_PAID = {"chat_completions", "send_message"}


def operation_id(route: APIRoute) -> str:
    """The endpoint function's name: what generated clients call the method."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in {"ErrorResponse": ErrorResponse, **_STREAM_SCHEMAS}.items():
        _add_component(components, name, model)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            _document_errors(operation)
    return schema


def _add_component(components: dict[str, Any], name: str, model: Any) -> None:
    json_schema = TypeAdapter(model).json_schema(ref_template=REF)
    components.update(json_schema.pop("$defs", {}))
    components[name] = json_schema


def _document_errors(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    codes = {"500", "503"}
    if operation.get("security"):
        codes |= {"401", "403", "404"}
    if operation.get("parameters") or operation.get("requestBody"):
        codes |= {"400", "422"}
    if operation.get("requestBody"):
        codes.add("413")
    if operation.get("operationId") in _PAID:
        codes |= {"402", "409", "429"}
    if "auth" in operation.get("tags", ()):
        codes.add("429")
    for code in sorted(codes | {c for c in responses if c[0] in "45"}):
        responses[code] = {
            "description": _WHY.get(code) or responses.get(code, {}).get("description", "error"),
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
        }
