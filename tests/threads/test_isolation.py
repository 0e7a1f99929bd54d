"""No thread route lets a member of one workspace read or write another workspace's thread.

The routes come from the app, so a thread route added later is covered without editing this
file; every one is called with a real thread id of another workspace.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from lipika.app import create_app
from lipika.config import Settings
from tests.workspaces.test_isolation import assert_hidden, endpoints, unwrap

THREAD_ROUTES = {
    ("POST", "/v1/threads"),
    ("GET", "/v1/threads"),
    ("GET", "/v1/threads/{thread_id}"),
    ("PATCH", "/v1/threads/{thread_id}"),
    ("DELETE", "/v1/threads/{thread_id}"),
    ("GET", "/v1/threads/{thread_id}/messages"),
    ("POST", "/v1/threads/{thread_id}/messages"),
}
BODIES = {
    "ThreadUpdate": {"title": "Taken over"},
    "MessageIn": {"content": "Tell me the secret", "model": "demo"},
}


@pytest.fixture
def api(app: object, settings: Settings) -> FastAPI:
    return unwrap(app) or create_app(settings)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_thread_routes_hide_other_workspaces_threads(
    client: httpx.AsyncClient, api: FastAPI, signup, team, threads
) -> None:
    workspace, people = await team()
    owner = people["owner"]
    target = await threads.create(owner.in_workspace(workspace), "Secret plans")
    await threads.say(owner.in_workspace(workspace), target["id"], "The launch code is swordfish")
    personal = await threads.create(owner.headers, "Owner's own")

    outsider = await signup("outsider")
    key = await client.post("/v1/api-keys", json={"name": "k"}, headers=outsider.headers)
    member_key = await client.post(
        "/v1/api-keys", json={"name": "k"}, headers=people["member"].in_workspace(workspace)
    )
    credentials = {
        "another user's token": outsider.headers,
        "another workspace's API key": _bearer(key.json()["key"]),
        # A member of the team, acting in their personal workspace, and the team's API key on
        # the owner's personal thread: a workspace's members see only that workspace's threads.
        "a team member in their personal workspace": people["member"].headers,
    }
    leaks = ["Secret plans", "swordfish", owner.email, owner.user_id]

    routes = [e for e in endpoints(api) if e.path.startswith("/v1/threads/")]
    assert {
        (e.method, e.path) for e in endpoints(api) if e.path.startswith("/v1/threads")
    } >= THREAD_ROUTES
    problems = []
    for label, headers in credentials.items():
        for endpoint in routes:
            response = await client.request(
                endpoint.method,
                endpoint.url({"thread_id": target["id"]}),
                headers=headers,
                json=BODIES.get(endpoint.body_model or "", None),
            )
            if problem := assert_hidden(response, endpoint, leaks):
                problems.append(f"[{label}] {problem}")
        listed = (await client.get("/v1/threads", headers=headers)).json()["data"]
        if target["id"] in {t["id"] for t in listed}:
            problems.append(f"[{label}] GET /v1/threads lists the target")
    for endpoint in routes:
        response = await client.request(
            endpoint.method,
            endpoint.url({"thread_id": personal["id"]}),
            headers=_bearer(member_key.json()["key"]),
            json=BODIES.get(endpoint.body_model or "", None),
        )
        if problem := assert_hidden(response, endpoint, ["Owner's own", owner.email]):
            problems.append(f"[team API key on a personal thread] {problem}")
    assert not problems, "\n".join(problems)

    # Nothing changed, and the owner and a team member still read the thread.
    for reader in (owner, people["member"]):
        read = await client.get(
            f"/v1/threads/{target['id']}", headers=reader.in_workspace(workspace)
        )
        assert read.status_code == 200 and read.json()["title"] == "Secret plans"
        history = await threads.history(reader.in_workspace(workspace), target["id"])
        assert [m["role"] for m in history["data"]] == ["user", "assistant"]
