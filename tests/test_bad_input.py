"""Inputs that once answered 500: each is a client's mistake and gets a clear 4xx, nothing lost."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute

from lipika.app import create_app
from lipika.config import Settings
from lipika.kit.routing import StrictJSONRoute
from tests.test_http import assert_error

# JSON that is valid as text but decodes to a lone UTF-16 surrogate, which no UTF-8 string holds.
LONE_SURROGATE = b'"\\ud800"'


def _json_with(template: str, raw_value: bytes) -> bytes:
    return template.encode().replace(b"%%", raw_value)


async def test_a_lone_surrogate_in_chat_content_is_refused(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    for stream in ("false", "true"):
        body = _json_with(
            '{"model": "demo", "stream": ' + stream + ', "messages": [{"role": "user", "content": %%}]}',
            LONE_SURROGATE,
        )
        response = await client.post(
            "/v1/chat/completions",
            content=body,
            headers={**account.headers, "Content-Type": "application/json"},
        )
        error = assert_error(response, 422, "malformed_json")
        assert "surrogate" in error["message"] or "UTF-8" in error["message"], error
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert balance["held"] == 0


async def test_a_lone_surrogate_anywhere_in_a_body_is_refused(client: httpx.AsyncClient) -> None:
    body = _json_with('{"email": "a@example.com", "password": %%}', LONE_SURROGATE)
    response = await client.post(
        "/v1/auth/login", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "malformed_json")
    # A correctly paired surrogate (one emoji, escaped) is ordinary text.
    paired = _json_with('{"email": "a@example.com", "password": %%}', b'"\\ud83d\\ude00 long enough"')
    response = await client.post(
        "/v1/auth/login", content=paired, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401, response.text


async def test_invalid_utf8_bytes_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/login",
        content=b'{"email": "a@example.com", "password": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 422, "malformed_json")


@pytest.mark.parametrize("amount", ["1e1000000", "1e999999999", "-1e1000000", "1e-1000000", "NaN", "Infinity"])
async def test_huge_or_odd_credit_amounts_on_a_thread_message(client: httpx.AsyncClient, signup, amount: str) -> None:
    account = await signup()
    thread = await client.post("/v1/threads", json={}, headers=account.headers)
    response = await client.post(
        f"/v1/threads/{thread.json()['id']}/messages",
        json={"content": "hi", "model": "demo", "stream": False, "max_credits": amount},
        headers=account.headers,
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("validation_error", "invalid_amount")
    # The thread is not left locked by the refused message.
    again = await client.post(
        f"/v1/threads/{thread.json()['id']}/messages",
        json={"content": "hi", "model": "demo", "stream": False},
        headers=account.headers,
    )
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("amount", ["1e1000000", "1e999999999", "-1e1000000", "NaN"])
async def test_huge_member_caps_are_refused(client: httpx.AsyncClient, team, amount: str) -> None:
    workspace_id, people = await team()
    response = await client.put(
        f"/v1/workspaces/{workspace_id}/members/{people['member'].user_id}/credit-cap",
        json={"monthly_credits": amount},
        headers=people["owner"].headers,
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("validation_error", "invalid_amount")


@pytest.mark.parametrize("before", [str(2**63), str(2**64 + 5), "99999999999999999999999999", "-1", "0"])
async def test_ledger_cursors_out_of_range(client: httpx.AsyncClient, signup, before: str) -> None:
    account = await signup()
    response = await client.get(f"/v1/billing/ledger?before={before}", headers=account.headers)
    assert_error(response, 422, "validation_error")


def test_every_route_parses_bodies_strictly(tmp_path) -> None:
    """A router made without `kit.routing.api_router` would take lone surrogates again."""
    app = create_app(Settings(data_dir=tmp_path, _env_file=None))
    routes = list(_api_routes(app.routes))
    assert routes
    loose = [r.path for r in routes if not isinstance(r, StrictJSONRoute)]
    assert not loose, loose


def _api_routes(routes):
    """Every APIRoute, through the routers the app includes (FastAPI wraps them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


async def test_nul_characters_are_refused_in_bodies_and_queries(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    thread = await client.post("/v1/threads", json={}, headers=account.headers)
    renamed = await client.patch(
        f"/v1/threads/{thread.json()['id']}", json={"title": "a\u0000b"}, headers=account.headers
    )
    error = assert_error(renamed, 422, "malformed_json")
    assert "NUL" in error["message"] and "body.title" in error["message"], error
    # An escaped backslash before "u0000" is ordinary text, not a NUL.
    literal = await client.patch(
        f"/v1/threads/{thread.json()['id']}",
        content=b'{"title": "a\\\\u0000b"}',
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert literal.status_code == 200, literal.text
    assert literal.json()["title"] == "a\\u0000b"
    ledger = await client.get("/v1/billing/ledger?model=demo%00", headers=account.headers)
    assert_error(ledger, 422, "validation_error")
