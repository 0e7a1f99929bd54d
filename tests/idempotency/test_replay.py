"""Idempotency keys: a retry with the same key and request gets the first answer, on both
databases; the same key sent 20 times at once runs once, on PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.apikeys.models import ApiKey
from lipika.billing.models import EntryKind
from lipika.db import utcnow
from lipika.idempotency.dependencies import scope_of
from lipika.idempotency.models import IdempotencyRecord
from lipika.idempotency.service import IdempotencyStore, fingerprint
from tests.fixtures.ledger import Books

CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def count_keys(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(ApiKey))).scalar_one()


def store_of(app: FastAPI) -> IdempotencyStore:
    return app.lifespan_state["idempotency"]  # type: ignore[attr-defined]


async def test_a_retry_gets_the_first_answer_and_creates_nothing_more(
    client: httpx.AsyncClient, signup, db_engine: AsyncEngine
) -> None:
    account = await signup()
    headers = keyed(account.headers, "create-key-1")
    first = await client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    again = await client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)

    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()  # the same secret: the same key, not a second one
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["content-type"] == first.headers["content-type"]
    assert await count_keys(db_engine) == 1


async def test_the_body_compares_by_value_not_by_bytes(
    client: httpx.AsyncClient, signup
) -> None:
    account = await signup()
    headers = {**keyed(account.headers, "k"), "content-type": "application/json"}
    first = await client.post("/v1/workspaces", content=b'{"name": "Team"}', headers=headers)
    again = await client.post("/v1/workspaces", content=b'{ "name":"Team" }', headers=headers)
    assert first.status_code == 201, first.text
    assert again.json()["id"] == first.json()["id"]


async def test_the_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient, signup, db_engine: AsyncEngine
) -> None:
    account = await signup()
    headers = keyed(account.headers, "create-key-2")
    await client.post("/v1/api-keys", json={"name": "one"}, headers=headers)
    other = await client.post("/v1/api-keys", json={"name": "two"}, headers=headers)

    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.headers["x-should-retry"] == "false"
    assert await count_keys(db_engine) == 1


async def test_keys_belong_to_their_caller(client: httpx.AsyncClient, signup) -> None:
    alice, bob = await signup("alice"), await signup("bob")
    theirs = await client.post(
        "/v1/api-keys", json={"name": "k"}, headers=keyed(alice.headers, "shared")
    )
    mine = await client.post("/v1/api-keys", json={"name": "k"}, headers=keyed(bob.headers, "shared"))
    assert mine.status_code == 201, mine.text
    assert "idempotent-replayed" not in mine.headers
    assert mine.json()["key"] != theirs.json()["key"]
    assert mine.json()["workspace_id"] == bob.personal_workspace_id


async def test_a_request_still_in_flight_is_a_retryable_409(
    client: httpx.AsyncClient, app: FastAPI, signup
) -> None:
    account = await signup()
    me = (await client.get("/v1/me", headers=account.headers)).json()
    scope = f"{me['workspace']['id']}:u:{account.user_id}"
    body = b'{"name":"k"}'
    await store_of(app).claim(scope, "busy", fingerprint("POST", "/v1/api-keys", "", body))

    copy = await client.post(
        "/v1/api-keys",
        content=body,
        headers={**keyed(account.headers, "busy"), "content-type": "application/json"},
    )
    assert copy.status_code == 409, copy.text
    assert copy.json()["error"]["code"] == "idempotency_request_in_flight"
    assert copy.headers["x-should-retry"] == "true"
    assert copy.headers["retry-after"] == "1"


async def test_a_claim_whose_request_died_is_taken_over(
    client: httpx.AsyncClient, app: FastAPI, signup, db_engine: AsyncEngine
) -> None:
    account = await signup()
    me = (await client.get("/v1/me", headers=account.headers)).json()
    scope = f"{me['workspace']['id']}:u:{account.user_id}"
    body = b'{"name":"k"}'
    dead = IdempotencyStore(db_engine, timedelta(hours=1), timedelta(seconds=0))
    await dead.claim(scope, "died", fingerprint("POST", "/v1/api-keys", "", body))

    retry = await client.post(
        "/v1/api-keys",
        content=body,
        headers={**keyed(account.headers, "died"), "content-type": "application/json"},
    )
    assert retry.status_code == 201, retry.text
    replay = await client.post(
        "/v1/api-keys",
        content=body,
        headers={**keyed(account.headers, "died"), "content-type": "application/json"},
    )
    assert replay.json() == retry.json()


async def test_a_refusal_of_the_body_releases_the_key(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    headers = keyed(account.headers, "fix-and-retry")
    bad = await client.post("/v1/api-keys", json={"name": ""}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    # The client fixes the body and retries with the same key: it runs.
    fixed = await client.post("/v1/api-keys", json={"name": "ok"}, headers=headers)
    assert fixed.status_code == 201, fixed.text


async def test_a_refusal_of_the_request_is_replayed(client: httpx.AsyncClient, signup) -> None:
    """A 4xx the handler decided (not a 409 or 429) is the request's answer, like Stripe's."""
    account = await signup()
    headers = keyed(account.headers, "not-operator")
    first = await client.post("/v1/billing/grants", json={"amount": "5", "reason": "goodwill"}, headers=headers)
    again = await client.post("/v1/billing/grants", json={"amount": "5", "reason": "goodwill"}, headers=headers)
    assert first.status_code == 403, first.text
    assert again.status_code == 403 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_replayed_completion_is_charged_once(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    headers = keyed(account.headers, "chat-1")
    first = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    again = await client.post("/v1/chat/completions", json=CHAT, headers=headers)

    assert first.status_code == 200, first.text
    assert again.json() == first.json()  # the same id, text and usage
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await books.entries(workspace_id, EntryKind.USAGE)) == 1
    assert len(await books.holds(workspace_id)) == 1
    await books.assert_balanced()


async def test_a_streamed_answer_is_not_replayed(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    headers = keyed(account.headers, "stream-1")
    streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers)
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    copy = await client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers)
    assert copy.status_code == 409, copy.text
    assert copy.json()["error"]["code"] == "idempotency_stream_not_replayed"
    assert copy.headers["x-should-retry"] == "false"
    assert len(await books.holds(workspace_id)) == 1
    await books.assert_balanced()


async def test_stored_answers_expire_by_the_periodic_task(
    client: httpx.AsyncClient, app: FastAPI, signup, db_engine: AsyncEngine
) -> None:
    account = await signup()
    headers = keyed(account.headers, "old")
    first = await client.post("/v1/api-keys", json={"name": "k"}, headers=headers)
    table = IdempotencyRecord.__table__
    async with db_engine.begin() as conn:
        await conn.execute(update(table).values(expires_at=utcnow() - timedelta(seconds=1)))

    periodic = app.lifespan_state["periodic"]  # type: ignore[attr-defined]
    reports = await periodic.run_once()
    assert reports["idempotency"] == {"expired_keys": 1}

    after = await client.post("/v1/api-keys", json={"name": "k"}, headers=headers)
    assert after.status_code == 201 and after.json()["key"] != first.json()["key"]
    assert await count_keys(db_engine) == 2


async def test_the_scope_names_the_api_key_or_the_user() -> None:
    from lipika.auth.dependencies import Principal
    from lipika.workspaces.models import Role, WorkspaceKind

    ws, user, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    by_user = Principal(user, ws, WorkspaceKind.PERSONAL, Role.OWNER, session_id=uuid.uuid4())
    by_key = Principal(user, ws, WorkspaceKind.PERSONAL, Role.OWNER, api_key_id=key)
    assert scope_of(by_user) == f"{ws}:u:{user}"
    assert scope_of(by_key) == f"{ws}:k:{key}"


@pytest.mark.postgres
async def test_the_same_key_sent_20_times_at_once_runs_once(
    client: httpx.AsyncClient, signup, books: Books, backend: str
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    headers = keyed(account.headers, "burst")
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=CHAT, headers=headers) for _ in range(20))
    )

    statuses = collections.Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}, [r.text for r in responses if r.status_code not in (200, 409)]
    executed = [r for r in responses if r.status_code == 200 and "idempotent-replayed" not in r.headers]
    assert len(executed) == 1
    replays = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
    assert all(r.json() == executed[0].json() for r in replays)
    in_flight = [r for r in responses if r.status_code == 409]
    assert all(r.json()["error"]["code"] == "idempotency_request_in_flight" for r in in_flight)
    assert len(await books.entries(workspace_id, EntryKind.USAGE)) == 1
    assert len(await books.holds(workspace_id)) == 1
    await books.assert_balanced()


async def test_one_user_in_two_workspaces_has_two_sets_of_keys(
    client: httpx.AsyncClient, signup, team
) -> None:
    workspace_id, accounts = await team()
    owner = accounts["owner"]
    in_team = await client.post(
        "/v1/api-keys", json={"name": "k"}, headers=keyed(owner.in_workspace(workspace_id), "same")
    )
    personal = await client.post("/v1/api-keys", json={"name": "k"}, headers=keyed(owner.headers, "same"))
    assert in_team.status_code == personal.status_code == 201, personal.text
    assert "idempotent-replayed" not in personal.headers
    assert in_team.json()["workspace_id"] == workspace_id
    assert personal.json()["workspace_id"] == owner.personal_workspace_id


async def test_an_api_key_and_its_creators_login_have_their_own_keys(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    account = await signup()
    key = (await client.post("/v1/api-keys", json={"name": "k"}, headers=account.headers)).json()
    by_login = await client.post("/v1/chat/completions", json=CHAT, headers=keyed(account.headers, "c"))
    by_key = await client.post(
        "/v1/chat/completions", json=CHAT, headers=keyed({"Authorization": f"Bearer {key['key']}"}, "c")
    )
    assert by_login.status_code == by_key.status_code == 200, by_key.text
    assert "idempotent-replayed" not in by_key.headers
    assert by_key.json()["id"] != by_login.json()["id"]
    assert len(await books.entries(uuid.UUID(account.personal_workspace_id), EntryKind.USAGE)) == 2
    await books.assert_balanced()


async def test_threads_and_their_messages_take_keys(client: httpx.AsyncClient, signup, books: Books) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    created = await client.post("/v1/threads", json={"title": "t"}, headers=keyed(account.headers, "t1"))
    again = await client.post("/v1/threads", json={"title": "t"}, headers=keyed(account.headers, "t1"))
    assert again.json()["id"] == created.json()["id"]
    path = f"/v1/threads/{created.json()['id']}/messages"

    message = {"content": "Hello", "model": "demo", "max_tokens": 8, "stream": False}
    run = await client.post(path, json=message, headers=keyed(account.headers, "m1"))
    replayed = await client.post(path, json=message, headers=keyed(account.headers, "m1"))
    assert run.status_code == 200, run.text
    assert replayed.json() == run.json() and replayed.headers["idempotent-replayed"] == "true"

    streamed = await client.post(path, json={**message, "stream": True}, headers=keyed(account.headers, "m2"))
    assert streamed.status_code == 200, streamed.text
    copy = await client.post(path, json={**message, "stream": True}, headers=keyed(account.headers, "m2"))
    assert copy.status_code == 409 and copy.json()["error"]["code"] == "idempotency_stream_not_replayed"
    history = await client.get(path, headers=account.headers)
    assert [m["role"] for m in history.json()["data"]].count("user") == 2  # each ran once
    await books.assert_balanced()


async def test_an_invitation_retried_is_sent_once(client: httpx.AsyncClient, signup) -> None:
    owner, invitee = await signup("owner"), await signup("invitee")
    team = (await client.post("/v1/workspaces", json={"name": "T"}, headers=owner.headers)).json()
    path = f"/v1/workspaces/{team['id']}/invitations"
    body = {"email": invitee.email, "role": "member"}
    first = await client.post(path, json=body, headers=keyed(owner.headers, "invite-1"))
    again = await client.post(path, json=body, headers=keyed(owner.headers, "invite-1"))
    assert first.status_code == 201, first.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    listed = await client.get(path, headers=owner.headers)
    assert len(listed.json()["data"]) == 1
