"""Who may do what with a thread: no route lets a member of another workspace reach a thread,
and within a workspace a thread is its creator's, shared read-only when its visibility is
`workspace`; an admin may delete any thread but read only shared ones.

The routes come from the app, so a thread route added later fails these tests until its rules
are written down here; every one is called with a real thread id.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from lipika.app import create_app
from lipika.config import Settings
from tests.workspaces.test_isolation import Endpoint, assert_hidden, endpoints, unwrap

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
    "ThreadUpdate": {"title": "Taken over", "visibility": "workspace"},
    "MessageIn": {"content": "Tell me the secret", "model": "demo", "max_tokens": 4},
}
CALLERS = ("creator", "member", "admin")
# Status of each route on one thread, by the thread's visibility, for (creator, member, admin)
# of its workspace. 404 is the bare not-found that reveals nothing; 403 is said only to callers
# who may already read the thread.
RULES: dict[tuple[str, str], dict[str, tuple[int, int, int]]] = {
    ("GET", "/v1/threads/{thread_id}"): {"private": (200, 404, 404), "workspace": (200, 200, 200)},
    ("GET", "/v1/threads/{thread_id}/messages"): {
        "private": (200, 404, 404),
        "workspace": (200, 200, 200),
    },
    ("PATCH", "/v1/threads/{thread_id}"): {
        "private": (200, 404, 404),
        "workspace": (200, 403, 403),
    },
    ("POST", "/v1/threads/{thread_id}/messages"): {
        "private": (200, 404, 404),
        "workspace": (200, 403, 403),
    },
    ("DELETE", "/v1/threads/{thread_id}"): {
        "private": (204, 404, 204),
        "workspace": (204, 403, 204),
    },
}
SECRET = "The launch code is swordfish"


@pytest.fixture
def api(app: object, settings: Settings) -> FastAPI:
    return unwrap(app) or create_app(settings)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _thread_routes(api: FastAPI) -> list[Endpoint]:
    found = [e for e in endpoints(api) if e.path.startswith("/v1/threads")]
    assert {(e.method, e.path) for e in found} >= THREAD_ROUTES
    return [e for e in found if e.path.startswith("/v1/threads/")]


async def _call(client: httpx.AsyncClient, endpoint: Endpoint, thread_id: str, headers: dict):
    return await client.request(
        endpoint.method,
        endpoint.url({"thread_id": thread_id}),
        headers=headers,
        json=BODIES.get(endpoint.body_model or "", None),
    )


async def test_thread_routes_hide_other_workspaces_threads(
    client: httpx.AsyncClient, api: FastAPI, signup, team, threads
) -> None:
    workspace, people = await team()
    owner = people["owner"]
    # Shared with its workspace, and still nobody else's business.
    target = await threads.create(owner.in_workspace(workspace), "Secret plans", "workspace")
    await threads.say(owner.in_workspace(workspace), target["id"], SECRET)
    personal = await threads.create(owner.headers, "Owner's own", "workspace")

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

    routes = _thread_routes(api)
    problems = []
    for label, headers in credentials.items():
        for endpoint in routes:
            response = await _call(client, endpoint, target["id"], headers)
            if problem := assert_hidden(response, endpoint, leaks):
                problems.append(f"[{label}] {problem}")
        listed = (await client.get("/v1/threads", headers=headers)).json()["data"]
        if target["id"] in {t["id"] for t in listed}:
            problems.append(f"[{label}] GET /v1/threads lists the target")
    for endpoint in routes:
        response = await _call(client, endpoint, personal["id"], _bearer(member_key.json()["key"]))
        if problem := assert_hidden(response, endpoint, ["Owner's own", owner.email]):
            problems.append(f"[team API key on a personal thread] {problem}")
    assert not problems, "\n".join(problems)

    # Nothing changed, and the owner and a team member still read the shared thread.
    for reader in (owner, people["member"]):
        read = await client.get(
            f"/v1/threads/{target['id']}", headers=reader.in_workspace(workspace)
        )
        assert read.status_code == 200 and read.json()["title"] == "Secret plans"
        history = await threads.history(reader.in_workspace(workspace), target["id"])
        assert [m["role"] for m in history["data"]] == ["user", "assistant"]


@pytest.mark.parametrize("visibility", ["private", "workspace"])
async def test_each_thread_route_follows_the_privacy_rules(
    client: httpx.AsyncClient, api: FastAPI, team, threads, visibility: str
) -> None:
    workspace, people = await team()
    creator = people["owner"]  # even the owner's thread is private from the admin
    callers = {
        "creator": creator.in_workspace(workspace),
        "member": people["member"].in_workspace(workspace),
        "admin": people["admin"].in_workspace(workspace),
    }
    routes = _thread_routes(api)
    assert {(e.method, e.path) for e in routes} == set(RULES), "a thread route without rules"

    async def new_thread() -> dict:
        thread = await threads.create(callers["creator"], "Private diary", visibility)
        await threads.say(callers["creator"], thread["id"], SECRET)
        return thread

    shared = visibility == "workspace"
    leaks = ["Private diary", "swordfish", creator.email]
    problems = []
    thread = await new_thread()
    # Everyone but the creator first, so that a write that should have been refused shows
    # (and the creator's rename, which shares the thread, comes last).
    for caller in ("member", "admin", "creator"):
        for endpoint in [e for e in routes if e.method != "DELETE"]:
            expected = RULES[(endpoint.method, endpoint.path)][visibility][CALLERS.index(caller)]
            response = await _call(client, endpoint, thread["id"], callers[caller])
            label = f"[{visibility}, {caller}] {endpoint}"
            if expected == 404:
                if problem := assert_hidden(response, endpoint, leaks):
                    problems.append(f"[{visibility}, {caller}] {problem}")
            elif response.status_code != expected:
                problems.append(f"{label}: {response.status_code} {response.text[:200]}")
            elif expected == 403 and response.json()["error"]["code"] != "thread_creator_only":
                problems.append(f"{label}: {response.json()}")
    assert not problems, "\n".join(problems)

    # Only the creator's own calls changed anything: its rename and its second message.
    read = (await client.get(f"/v1/threads/{thread['id']}", headers=callers["creator"])).json()
    assert (read["title"], read["visibility"]) == ("Taken over", "workspace")
    history = (await threads.history(callers["creator"], thread["id"]))["data"]
    assert [m["content"] for m in history if m["role"] == "user"] == [SECRET, "Tell me the secret"]

    delete = next(e for e in routes if e.method == "DELETE")
    survivors = set()
    for caller in ("member", "admin", "creator"):
        expected = RULES[(delete.method, delete.path)][visibility][CALLERS.index(caller)]
        doomed = await new_thread()
        response = await _call(client, delete, doomed["id"], callers[caller])
        assert response.status_code == expected, f"[{caller}] {response.text}"
        if expected == 204:
            assert response.content == b""  # an admin deleting learns nothing of the thread
        elif expected == 404:
            assert assert_hidden(response, delete, leaks) is None
        else:
            assert response.json()["error"]["code"] == "insufficient_role"
        still_there = await client.get(f"/v1/threads/{doomed['id']}", headers=callers["creator"])
        assert still_there.status_code == (404 if expected == 204 else 200)
        if expected != 204:
            survivors.add(doomed["id"])

    # Lists: the creator's own threads, and the others' only when shared.
    mine = await threads.create(callers["creator"], "Mine, private")
    for caller, headers in callers.items():
        listed = {
            t["id"] for t in (await client.get("/v1/threads", headers=headers)).json()["data"]
        }
        if caller == "creator":
            assert listed == {thread["id"], mine["id"], *survivors}
        else:  # `thread` was shared by its creator's call above
            assert listed == {thread["id"], *(survivors if shared else ())}
