"""HTTP plumbing: error shapes, body limits, request ids, probes and docs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

import lipika.errors
from lipika.app import create_app
from lipika.config import Settings
from tests.fixtures.live import serve


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


async def test_malformed_json_is_422_malformed_json(client: httpx.AsyncClient) -> None:
    for raw in (b'{"email": "a@example.com", "password": ', b"not json at all", b'{"email": "a@example.com",}'):
        response = await client.post(
            "/v1/auth/login", content=raw, headers={"Content-Type": "application/json"}
        )
        error = assert_error(response, 422, "malformed_json")
        assert error["type"] == "invalid_request_error"
        assert error["details"]["errors"]


async def test_wrong_field_types_are_422_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/login", json={"email": 5, "password": ["a list"]})
    error = assert_error(response, 422, "validation_error")
    locations = {tuple(e["loc"]) for e in error["details"]["errors"]}
    assert ("body", "email") in locations
    assert ("body", "password") in locations

    missing = await client.post("/v1/auth/login", json={})
    assert_error(missing, 422, "validation_error")

    # The submitted values are not echoed back (a password must not end up in a response).
    secret = "a-password-that-must-not-leak"
    echoed = await client.post("/v1/auth/signup", json={"email": "not-an-email", "password": secret})
    assert_error(echoed, 422, "validation_error")
    assert secret not in echoed.text
    assert all(set(e) <= {"loc", "msg", "type"} for e in echoed.json()["error"]["details"]["errors"])


async def test_oversized_body_with_content_length_is_413(client: httpx.AsyncClient, settings: Settings) -> None:
    limit = settings.max_request_bytes
    body = b'{"email": "a@example.com", "password": "' + b"x" * limit + b'"}'
    response = await client.post("/v1/auth/login", content=body, headers={"Content-Type": "application/json"})
    assert response.request.headers["content-length"] == str(len(body))
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["limit_bytes"] == limit
    assert response.headers["x-request-id"]


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"x" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient, settings: Settings) -> None:
    limit = settings.max_request_bytes
    response = await client.post(
        "/v1/auth/login", content=_chunks(limit + 1), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["limit_bytes"] == limit


async def test_chunked_body_under_the_limit_reaches_the_app(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    payload = f'{{"email": "{account.email}", "password": "{account.password}"}}'.encode()

    async def in_pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 7):
            yield payload[start : start + 7]

    response = await client.post("/v1/auth/login", content=in_pieces(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == account.user_id


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/no-such-route")
    error = assert_error(missing, 404, "not_found")
    assert error["type"] == "not_found_error"
    wrong_method = await client.delete("/healthz")
    assert_error(wrong_method, 405, "method_not_allowed")


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    responses = [
        await client.get("/healthz"),
        await client.get("/v1/me"),
        await client.get("/v1/no-such-route"),
        await client.post("/v1/auth/login", json={}),
        await client.post("/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}),
    ]
    assert [r.status_code for r in responses] == [200, 401, 404, 422, 422]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)
    assert all(len(r.headers.get_list("x-request-id")) == 1 for r in responses)

    echoed = await client.get("/healthz", headers={"X-Request-ID": "client-trace.42:abc_DEF-1"})
    assert echoed.headers["x-request-id"] == "client-trace.42:abc_DEF-1"
    on_error = await client.get("/v1/me", headers={"X-Request-ID": "trace-401"})
    assert on_error.status_code == 401
    assert on_error.headers["x-request-id"] == "trace-401"

    for insane in ("has spaces in it", "x" * 129, "semi;colon", "<script>"):
        replaced = await client.get("/healthz", headers={"X-Request-ID": insane})
        assert replaced.headers["x-request-id"] != insane
        assert replaced.headers["x-request-id"]


async def test_an_internal_error_carries_a_request_id(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[tuple] = []

    class QuietLog:  # the console renderer's traceback is slow and noisy; record instead
        def exception(self, *args: object, **kwargs: object) -> None:
            logged.append((args, kwargs))

    monkeypatch.setattr(lipika.errors, "log", QuietLog())
    application: FastAPI = create_app(settings)

    @application.get("/test-only/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
        response = await http.get("/test-only/boom", headers={"X-Request-ID": "trace-500"})
    assert_error(response, 500, "internal_error")
    assert "boom" not in response.text
    assert len(logged) == 1
    assert response.headers.get("x-request-id") == "trace-500"


async def test_a_500_says_connection_close_and_the_next_request_works(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server drops the connection after a 500 (Starlette re-raises the error): over real
    HTTP, a keep-alive client told `Connection: close` opens a new one for its next request."""
    class QuietLog:
        def exception(self, *args: object, **kwargs: object) -> None:
            pass

    monkeypatch.setattr(lipika.errors, "log", QuietLog())
    application: FastAPI = create_app(settings)

    @application.get("/test-only/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    async with serve(application) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get("/healthz")).status_code == 200
        response = await http.get("/test-only/boom")
        assert_error(response, 500, "internal_error")
        assert response.headers["connection"] == "close"
        for _ in range(3):
            assert (await http.get("/healthz")).status_code == 200


async def test_probes(client: httpx.AsyncClient) -> None:
    healthz = await client.get("/healthz")
    assert healthz.status_code == 200
    assert healthz.json() == {"status": "ok"}

    readyz = await client.get("/readyz")
    assert readyz.status_code == 200, readyz.text
    assert readyz.json() == {
        "status": "ok",
        "checks": {"database": "ok", "checkpoint_database": "ok", "redis": "ok"},
    }


async def test_docs_and_openapi(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    schema = await client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/v1/me", "/v1/api-keys", "/v1/workspaces/{workspace_id}/members/{user_id}"} <= set(paths)
    assert schema.json()["info"]["title"] == "Lipika"
