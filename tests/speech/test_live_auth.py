"""Who may open a live session: the WebSocket route refuses anonymous callers, foreign
workspaces, used or expired tickets and tokens in the URL, each with a typed `error` event and
a close code, and lets in a ticket, the bearer subprotocol and an API key's header."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.speech.conftest import live

SUBPROTOCOL = "lipika.v1"


async def _refused(url: str, query: str = "", **kwargs) -> tuple[str, int | None]:
    async with live(url, query, **kwargs) as (_, got, reader):
        await reader
    assert [e["type"] for e in got.events] == ["error"], got.events
    assert got.last["fatal"] is True
    return got.last["error"]["code"], got.close_code


async def _opens(url: str, query: str = "", **kwargs) -> dict:
    async with live(url, query, **kwargs) as (ws, got, reader):
        for _ in range(4):  # 1 s of silence
            await ws.send(b"\x00\x00" * 4_000)
        await ws.send('{"type": "close"}')
        await reader
    assert got.events[0]["type"] == "ready", got.events
    assert got.last == {"type": "done", "reason": "closed"}
    return got.of("usage")[0]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credentials"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_credentials"),
        ({"Authorization": "Bearer lpk_not-a-real-key"}, "invalid_api_key"),
        ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
    ],
)
async def test_anonymous_sessions_are_refused(speech_url, client, headers, code) -> None:
    assert await _refused(speech_url, headers=headers) == (code, 4401)


async def test_credentials_in_the_url_are_refused_unread(speech_url, signup) -> None:
    account = await signup()
    code, close = await _refused(speech_url, f"?access_token={account.access_token}")
    assert (code, close) == ("credentials_in_url", 4400)


async def test_another_workspace_is_not_found(
    speech_url, client: httpx.AsyncClient, signup, books
) -> None:
    owner, outsider = await signup("owner"), await signup("outsider")
    made = await client.post("/v1/workspaces", json={"name": "Target"}, headers=owner.headers)
    target = made.json()["id"]
    key = (await client.post("/v1/api-keys", json={"name": "k"}, headers=outsider.headers)).json()[
        "key"
    ]
    for headers in (
        {**outsider.headers, "X-Workspace-Id": target},
        {"Authorization": f"Bearer {key}", "X-Workspace-Id": target},
    ):
        assert await _refused(speech_url, headers=headers) == ("not_found", 4404)
    assert await _refused(speech_url, f"?workspace_id={target}", headers=outsider.headers) == (
        "not_found",
        4404,
    )
    # Nor is a ticket issued for it.
    issued = await client.post(
        "/v1/audio/transcriptions/sessions", headers={**outsider.headers, "X-Workspace-Id": target}
    )
    assert issued.status_code == 404
    assert issued.json()["error"]["code"] == "not_found"
    assert await books.holds(uuid.UUID(target)) == []


async def test_a_ticket_opens_one_session_once(
    speech_url, speech_client: httpx.AsyncClient, signup, books
) -> None:
    account = await signup()
    issued = await speech_client.post("/v1/audio/transcriptions/sessions", headers=account.headers)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["url"] == f"/v1/audio/transcriptions/live?ticket={body['ticket']}"
    usage = await _opens(speech_url, f"?ticket={body['ticket']}")
    assert usage["charged_seconds"] == 1
    assert await _refused(speech_url, f"?ticket={body['ticket']}") == ("invalid_ticket", 4401)
    assert await _refused(speech_url, "?ticket=stt_forged") == ("invalid_ticket", 4401)
    await books.assert_balanced()


async def test_a_ticket_for_another_workspace_is_refused(
    speech_url, speech_client, client, signup
) -> None:
    owner, outsider = await signup("owner"), await signup("outsider")
    target = (
        await client.post("/v1/workspaces", json={"name": "T"}, headers=owner.headers)
    ).json()["id"]
    ticket = (
        await speech_client.post("/v1/audio/transcriptions/sessions", headers=outsider.headers)
    ).json()["ticket"]
    assert await _refused(speech_url, f"?ticket={ticket}&workspace_id={target}") == (
        "invalid_ticket",
        4401,
    )


async def test_the_bearer_subprotocol_and_an_api_key_header_open_sessions(
    speech_url, client, signup, books
) -> None:
    account = await signup()
    await _opens(speech_url, subprotocols=[SUBPROTOCOL, f"bearer.{account.access_token}"])
    key = (await client.post("/v1/api-keys", json={"name": "k"}, headers=account.headers)).json()[
        "key"
    ]
    await _opens(speech_url, headers={"Authorization": f"Bearer {key}"})
    await books.assert_balanced()


async def test_bad_options_and_unknown_models_are_typed_errors(speech_url, signup) -> None:
    account = await signup()
    for query, code in (
        ("?encoding=flac", ("validation_error", 4422)),
        ("?sample_rate=99", ("validation_error", 4422)),
        ("?colour=blue", ("validation_error", 4422)),
        ("?model=nope", ("model_not_found", 4404)),
        ("?model=realtime", ("model_not_found", 4404)),  # stt.realtime names no provider
        ("?model=nova-3", ("model_unavailable", 1011)),  # no Deepgram key on this server
    ):
        assert await _refused(speech_url, query, headers=account.headers) == code, query
