"""Tenant isolation and authentication, checked route by route.

The routes come from the app itself, so a route added later is covered without editing
this file: every `/v1/workspaces/{workspace_id}...` route must hide other workspaces, and
every route outside a short public list must refuse an anonymous call.
"""

from __future__ import annotations

import re
import typing
import uuid
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from lipika.app import create_app
from lipika.config import Settings

WORKSPACE_ROUTE = "/v1/workspaces/{workspace_id}"
PUBLIC_PATHS = {
    "/healthz",
    "/readyz",
    "/docs",
    "/openapi.json",
    "/docs/oauth2-redirect",
    "/redoc",
    "/v1/auth/signup",
    "/v1/auth/login",
    "/v1/auth/refresh",
    # Deliberately public: each takes an address or a mailed token, and answers the same
    # whether or not an account exists.
    "/v1/auth/verify-email",
    "/v1/auth/verify-email/resend",
    "/v1/auth/password-reset",
    "/v1/auth/password-reset/confirm",
    # Deliberately public: the published charge policy (its docstring says so).
    "/v1/billing/charge-policy",
    # Deliberately public, for the scraper: per-process counters with bounded labels and no
    # ids (tests/ops/test_metrics.py); production serves them on a port of their own.
    "/metrics",
    # Deliberately public: the payment gateway's notifications and the buyer's browser back
    # from it (cross-site form POSTs, no credentials); each is trusted only by its signature
    # and the gateway's validation of the order (tests/payments). The demo gateway's hosted
    # page stands in for the gateway's own (404 unless the demo gateway is in use).
    "/v1/payments/sslcommerz/ipn",
    "/v1/payments/sslcommerz/return/{outcome}",
    "/v1/payments/demo/{session_key}",
}
# Routes known today: the enumeration must find at least these, or it is broken.
KNOWN_WORKSPACE_ROUTES = {
    ("GET", "/v1/workspaces/{workspace_id}"),
    ("PATCH", "/v1/workspaces/{workspace_id}"),
    ("GET", "/v1/workspaces/{workspace_id}/members"),
    ("PATCH", "/v1/workspaces/{workspace_id}/members/{user_id}"),
    ("DELETE", "/v1/workspaces/{workspace_id}/members/{user_id}"),
    ("POST", "/v1/workspaces/{workspace_id}/invitations"),
    ("GET", "/v1/workspaces/{workspace_id}/invitations"),
    ("DELETE", "/v1/workspaces/{workspace_id}/invitations/{invitation_id}"),
}
KNOWN_PRIVATE_ROUTES = {
    ("GET", "/v1/me"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/workspaces"),
    ("POST", "/v1/workspaces"),
    ("GET", "/v1/invitations"),
    ("POST", "/v1/invitations/{invitation_id}/accept"),
    ("POST", "/v1/invitations/{invitation_id}/decline"),
    ("POST", "/v1/api-keys"),
    ("GET", "/v1/api-keys"),
    ("DELETE", "/v1/api-keys/{key_id}"),
} | KNOWN_WORKSPACE_ROUTES

# Valid bodies, by request model name, so that a route that forgot its access check would
# really act (and the test see it), rather than stop at body validation.
SAMPLE_BODIES: dict[str, dict] = {
    "WorkspaceCreate": {"name": "Intruder"},
    "WorkspaceUpdate": {"name": "Taken over"},
    "RoleUpdate": {"role": "owner"},
    "InvitationCreate": {"email": "intruder@example.com", "role": "owner"},
    "ApiKeyCreate": {"name": "intruder"},
    "LogoutRequest": {"all_sessions": True},
    "MemberCapIn": {"monthly_credits": 0},
    "CheckoutIn": {"pack": "credits-500"},
    "SubscriptionChange": {"seats": 1},
    "RefundIn": {"reason": "intruder refund"},
    "VideoParams": {"prompt": "intruder", "seconds": 1},
    "JobCreate": {"kind": "image", "params": {"prompt": "intruder"}},
    "ImageGenerationRequest": {"prompt": "intruder"},
    "WebhookEndpointCreate": {"url": "https://intruder.example/hook"},
}
_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    body_model: str | None

    def url(self, values: dict[str, str]) -> str:
        return _PARAM.sub(lambda m: values.get(m[1]) or str(uuid.uuid4()), self.path)

    def body(self) -> dict | None:
        if self.body_model is None:
            return None
        return SAMPLE_BODIES.get(self.body_model, {})

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def unwrap(asgi_app: object) -> FastAPI | None:
    """The FastAPI app inside ASGI wrappers (asgi-lifespan's LifespanManager wraps it in a closure)."""
    seen: set[int] = set()
    todo = [asgi_app]
    while todo:
        candidate = todo.pop()
        if isinstance(candidate, FastAPI):
            return candidate
        if id(candidate) in seen:
            continue
        seen.add(id(candidate))
        todo.extend(cell.cell_contents for cell in getattr(candidate, "__closure__", None) or ())
        if hasattr(candidate, "app"):
            todo.append(candidate.app)
    return None


@pytest.fixture
def api(app: object, settings: Settings) -> FastAPI:
    """The application under test, unwrapped; a fresh one has the same routes if that fails."""
    return unwrap(app) or create_app(settings)


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every (method, path) the app serves, with included routers flattened."""
    try:  # FastAPI >= 0.16x keeps included routers as lazy branches of app.routes.
        from fastapi.routing import iter_route_contexts

        routes = [(c.path, c.methods, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:
        routes = [(r.path, getattr(r, "methods", None), r) for r in app.routes]
    found = []
    for path, methods, route in routes:
        for method in sorted(methods or ()):
            if method != "HEAD":  # served by the GET handler
                found.append(Endpoint(method, path, _body_model(route)))
    return found


def _body_model(route: object) -> str | None:
    body_field = getattr(route, "body_field", None)
    if body_field is None:
        return None
    annotation = body_field.field_info.annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and candidate is not type(None):
            return candidate.__name__
    return ""


def assert_hidden(response: httpx.Response, endpoint: Endpoint, leaks: list[str]) -> str | None:
    """None if the response is a bare 404 in the error shape that reveals nothing."""
    if response.status_code != 404:
        return f"{endpoint}: {response.status_code} {response.text[:200]}"
    body = response.json()
    if set(body) != {"error"} or body["error"].get("code") != "not_found" or not body["error"].get("message"):
        return f"{endpoint}: not the error shape: {body}"
    if set(body["error"]) - {"type", "code", "message", "param", "details"}:
        return f"{endpoint}: unexpected error fields: {body}"
    leaked = [value for value in leaks if value.lower() in response.text.lower()]
    if leaked:
        return f"{endpoint}: response reveals {leaked}"
    return None


async def _team(client: httpx.AsyncClient, owner, name: str) -> str:
    response = await client.post("/v1/workspaces", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _key(client: httpx.AsyncClient, headers: dict[str, str]) -> dict:
    response = await client.post("/v1/api-keys", json={"name": "key"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_enumeration_finds_the_known_routes(api: FastAPI) -> None:
    found = {(e.method, e.path) for e in endpoints(api)}
    assert KNOWN_PRIVATE_ROUTES <= found, KNOWN_PRIVATE_ROUTES - found
    assert PUBLIC_PATHS <= {path for _, path in found}, PUBLIC_PATHS - {path for _, path in found}
    bodies = {str(e): e.body_model for e in endpoints(api)}
    assert bodies["PATCH /v1/workspaces/{workspace_id}"] == "WorkspaceUpdate"
    assert bodies["POST /v1/auth/logout"] == "LogoutRequest"


async def test_workspace_routes_hide_other_workspaces(client: httpx.AsyncClient, api: FastAPI, signup) -> None:
    owner, outsider = await signup("owner"), await signup("outsider")
    target = await _team(client, owner, "Target Team")
    invited = await client.post(
        f"/v1/workspaces/{target}/invitations", json={"email": "invitee@example.com"}, headers=owner.headers
    )
    assert invited.status_code == 201, invited.text
    invitation_id = invited.json()["id"]

    outsider_team = await _team(client, outsider, "Outsider Team")
    outsider_key = await _key(client, outsider.in_workspace(outsider_team))
    # The owner belongs to the target, but this key belongs to their personal workspace.
    owner_personal_key = await _key(client, owner.headers)

    credentials = {
        "access token of a user of another workspace": outsider.headers,
        "same, with X-Workspace-Id naming the target": outsider.in_workspace(target),
        "API key of another workspace": _bearer(outsider_key["key"]),
        "API key of workspace A on workspace B (same user)": _bearer(owner_personal_key["key"]),
    }
    values = {"workspace_id": target, "user_id": owner.user_id, "invitation_id": invitation_id}
    leaks = ["Target Team", owner.email, "invitee@example.com", owner.user_id, invitation_id]

    routes = [e for e in endpoints(api) if e.path == WORKSPACE_ROUTE or e.path.startswith(WORKSPACE_ROUTE + "/")]
    assert KNOWN_WORKSPACE_ROUTES <= {(e.method, e.path) for e in routes}

    problems = []
    for label, headers in credentials.items():
        for endpoint in routes:
            response = await client.request(
                endpoint.method, endpoint.url(values), headers=headers, json=endpoint.body()
            )
            problem = assert_hidden(response, endpoint, leaks)
            if problem:
                problems.append(f"[{label}] {problem}")
    assert not problems, "\n".join(problems)

    # Nothing changed in the target ...
    workspace = (await client.get(f"/v1/workspaces/{target}", headers=owner.headers)).json()
    assert workspace["name"] == "Target Team"
    members = (await client.get(f"/v1/workspaces/{target}/members", headers=owner.headers)).json()["data"]
    assert [(m["user_id"], m["role"]) for m in members] == [(owner.user_id, "owner")]
    invitations = (await client.get(f"/v1/workspaces/{target}/invitations", headers=owner.headers)).json()["data"]
    assert [(i["id"], i["status"]) for i in invitations] == [(invitation_id, "pending")]

    # ... and the same requests by a member do work, so the 404s above were not an accident.
    for endpoint in routes:
        if endpoint.method == "GET":
            response = await client.get(endpoint.url(values), headers=owner.headers)
            assert response.status_code == 200, f"{endpoint}: {response.text}"
    assert (await client.get(f"/v1/workspaces/{outsider_team}", headers=_bearer(outsider_key["key"]))).status_code == 200


async def test_workspace_header_for_a_foreign_workspace_is_not_found(
    client: httpx.AsyncClient, api: FastAPI, signup
) -> None:
    """Routes that act in the current workspace refuse an X-Workspace-Id the caller is not in."""
    owner, outsider = await signup("owner"), await signup("outsider")
    target = await _team(client, owner, "Target Team")
    owner_key = await _key(client, owner.in_workspace(target))
    outsider_key = await _key(client, outsider.headers)
    values = {"workspace_id": target, "key_id": owner_key["id"], "user_id": owner.user_id}
    leaks = ["Target Team", owner.email, owner_key["prefix"]]

    routes = [
        e
        for e in endpoints(api)
        if e.path not in PUBLIC_PATHS and not e.path.startswith(WORKSPACE_ROUTE)
    ]
    assert {("GET", "/v1/me"), ("GET", "/v1/api-keys"), ("POST", "/v1/api-keys")} <= {(e.method, e.path) for e in routes}

    credentials = {
        "access token": outsider.in_workspace(target),
        "API key": {**_bearer(outsider_key["key"]), "X-Workspace-Id": target},
    }
    problems = []
    for label, headers in credentials.items():
        for endpoint in routes:
            response = await client.request(endpoint.method, endpoint.url(values), headers=headers, json=endpoint.body())
            problem = assert_hidden(response, endpoint, leaks)
            if problem:
                problems.append(f"[{label}] {problem}")
    assert not problems, "\n".join(problems)

    # The outsider's login and key still work, and the owner's key was not revoked.
    assert (await client.get("/v1/me", headers=outsider.headers)).status_code == 200
    assert (await client.get("/v1/me", headers=_bearer(outsider_key["key"]))).status_code == 200
    me = await client.get("/v1/me", headers=_bearer(owner_key["key"]))
    assert me.status_code == 200
    assert me.json()["workspace"]["id"] == target


async def test_every_private_route_refuses_anonymous_calls(client: httpx.AsyncClient, api: FastAPI) -> None:
    routes = [e for e in endpoints(api) if e.path not in PUBLIC_PATHS]
    assert KNOWN_PRIVATE_ROUTES <= {(e.method, e.path) for e in routes}

    problems = []
    for endpoint in routes:
        url = endpoint.url({})
        for headers, code in (
            ({}, "missing_credentials"),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_credentials"),
            (_bearer("lpk_not-a-real-key"), "invalid_api_key"),
            (_bearer("not.a.jwt"), "invalid_token"),
        ):
            response = await client.request(endpoint.method, url, headers=headers, json=endpoint.body())
            if response.status_code != 401:
                problems.append(f"{endpoint} {headers}: {response.status_code} {response.text[:200]}")
                continue
            error = response.json().get("error", {})
            if error.get("code") != code or not error.get("message"):
                problems.append(f"{endpoint} {headers}: {response.json()}")
            if response.headers.get("www-authenticate") != "Bearer":
                problems.append(f"{endpoint} {headers}: no WWW-Authenticate: Bearer")
    assert not problems, "\n".join(problems)
