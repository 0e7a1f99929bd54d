"""API keys: a workspace credential acting as its creator, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.db import Base


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def create_key(client: httpx.AsyncClient, headers: dict[str, str], name: str = "key") -> dict:
    response = await client.post("/v1/api-keys", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def list_keys(client: httpx.AsyncClient, headers: dict[str, str], include_revoked: bool = False) -> list[dict]:
    params = {"include_revoked": "true"} if include_revoked else {}
    response = await client.get("/v1/api-keys", headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "list"
    return response.json()["data"]


async def test_the_secret_is_shown_once_and_works_as_a_bearer(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    created = await create_key(client, account.headers, name="ci runner")
    secret = created["key"]
    assert secret.startswith("lpk_")
    assert len(secret) > 30
    assert secret.startswith(created["prefix"]) and len(created["prefix"]) < len(secret) - 16
    assert created["name"] == "ci runner"
    assert created["workspace_id"] == account.personal_workspace_id
    assert created["user_id"] == account.user_id
    assert created["last_used_at"] is None and created["revoked_at"] is None

    listed = await client.get("/v1/api-keys", headers=account.headers)
    assert secret not in listed.text
    [shown] = listed.json()["data"]
    assert "key" not in shown
    assert shown["id"] == created["id"]
    assert shown["prefix"] == created["prefix"]
    assert shown["last_used_at"] is None

    me = await client.get("/v1/me", headers=bearer(secret))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["via"] == "api_key"
    assert body["user"]["id"] == account.user_id
    assert body["workspace"]["id"] == account.personal_workspace_id
    assert [w["id"] for w in body["workspaces"]] == [account.personal_workspace_id]
    # The key's own workspace may be named explicitly.
    explicit = await client.get("/v1/me", headers={**bearer(secret), "X-Workspace-Id": account.personal_workspace_id})
    assert explicit.status_code == 200

    [used] = await list_keys(client, account.headers)
    assert used["last_used_at"] is not None
    # Listing with the key itself never shows a secret either.
    assert secret not in (await client.get("/v1/api-keys", headers=bearer(secret))).text

    assert_error(await client.post("/v1/api-keys", json={"name": ""}, headers=account.headers), 422, "validation_error")
    assert_error(await client.post("/v1/api-keys", json={}, headers=account.headers), 422, "validation_error")


async def test_a_team_key_acts_in_its_team_with_its_creators_role(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    member = accounts["member"]
    created = await create_key(client, member.in_workspace(workspace_id))
    assert created["workspace_id"] == workspace_id

    me = (await client.get("/v1/me", headers=bearer(created["key"]))).json()
    assert me["workspace"]["id"] == workspace_id
    assert me["workspace"]["role"] == "member"
    assert me["via"] == "api_key"
    listed = (await client.get("/v1/workspaces", headers=bearer(created["key"]))).json()["data"]
    assert [w["id"] for w in listed] == [workspace_id]

    rename = await client.patch(f"/v1/workspaces/{workspace_id}", json={"name": "x"}, headers=bearer(created["key"]))
    assert_error(rename, 403, "insufficient_role")
    elsewhere = await client.get(
        "/v1/me", headers={**bearer(created["key"]), "X-Workspace-Id": member.personal_workspace_id}
    )
    assert_error(elsewhere, 404, "not_found")


async def test_revocation_is_immediate(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    kept, revoked = await create_key(client, account.headers, "kept"), await create_key(client, account.headers, "gone")
    assert (await client.get("/v1/me", headers=bearer(revoked["key"]))).status_code == 200

    response = await client.delete(f"/v1/api-keys/{revoked['id']}", headers=account.headers)
    assert response.status_code == 204, response.text
    refused = await client.get("/v1/me", headers=bearer(revoked["key"]))
    assert_error(refused, 401, "invalid_api_key")
    assert refused.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/v1/me", headers=bearer(kept["key"]))).status_code == 200

    assert [k["id"] for k in await list_keys(client, account.headers)] == [kept["id"]]
    everything = {k["id"]: k for k in await list_keys(client, account.headers, include_revoked=True)}
    assert set(everything) == {kept["id"], revoked["id"]}
    assert everything[revoked["id"]]["revoked_at"] is not None
    assert everything[kept["id"]]["revoked_at"] is None
    assert "key" not in everything[revoked["id"]]

    # Revoking again is harmless; unknown ids and made-up keys are refused.
    assert (await client.delete(f"/v1/api-keys/{revoked['id']}", headers=account.headers)).status_code == 204
    assert_error(await client.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=account.headers), 404, "not_found")
    assert_error(await client.get("/v1/me", headers=bearer("lpk_" + "x" * 43)), 401, "invalid_api_key")
    assert_error(await client.get("/v1/me", headers=bearer(revoked["key"][:-1])), 401, "invalid_api_key")


async def test_members_manage_their_own_keys_admins_all(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    keys = {role: await create_key(client, a.in_workspace(workspace_id), role) for role, a in accounts.items()}
    personal = await create_key(client, accounts["owner"].headers, "personal")
    member, admin = accounts["member"], accounts["admin"]

    seen = {k["id"] for k in await list_keys(client, member.in_workspace(workspace_id))}
    assert seen == {keys["member"]["id"]}
    via_key = {k["id"] for k in await list_keys(client, bearer(keys["member"]["key"]))}
    assert via_key == {keys["member"]["id"]}
    for role in ("admin", "owner"):
        seen = {k["id"] for k in await list_keys(client, accounts[role].in_workspace(workspace_id))}
        assert seen == {k["id"] for k in keys.values()}, role
    assert personal["id"] not in seen

    for target in ("admin", "owner"):
        refused = await client.delete(f"/v1/api-keys/{keys[target]['id']}", headers=member.in_workspace(workspace_id))
        assert_error(refused, 404, "not_found")
        assert (await client.get("/v1/me", headers=bearer(keys[target]["key"]))).status_code == 200
    # Nor from outside the team (the personal workspace does not hold the key).
    assert_error(await client.delete(f"/v1/api-keys/{keys['owner']['id']}", headers=member.headers), 404, "not_found")
    not_in_team = await client.delete(f"/v1/api-keys/{personal['id']}", headers=admin.in_workspace(workspace_id))
    assert_error(not_in_team, 404, "not_found")
    assert (await client.get("/v1/me", headers=bearer(personal["key"]))).status_code == 200

    by_admin = await client.delete(f"/v1/api-keys/{keys['member']['id']}", headers=admin.in_workspace(workspace_id))
    assert by_admin.status_code == 204, by_admin.text
    assert_error(await client.get("/v1/me", headers=bearer(keys["member"]["key"])), 401, "invalid_api_key")

    own = await create_key(client, member.in_workspace(workspace_id), "second")
    assert (await client.delete(f"/v1/api-keys/{own['id']}", headers=member.in_workspace(workspace_id))).status_code == 204
    assert_error(await client.get("/v1/me", headers=bearer(own["key"])), 401, "invalid_api_key")


async def test_api_keys_cannot_do_account_actions(client: httpx.AsyncClient, signup) -> None:
    owner, invitee = await signup("owner"), await signup("invitee")
    workspace_id = (await client.post("/v1/workspaces", json={"name": "Team"}, headers=owner.headers)).json()["id"]
    invitation = await client.post(
        f"/v1/workspaces/{workspace_id}/invitations", json={"email": invitee.email}, headers=owner.headers
    )
    owner_key = (await create_key(client, owner.headers))["key"]
    invitee_key = (await create_key(client, invitee.headers))["key"]

    assert_error(
        await client.post("/v1/workspaces", json={"name": "Nope"}, headers=bearer(owner_key)), 403, "user_token_required"
    )
    assert_error(await client.post("/v1/auth/logout", headers=bearer(owner_key)), 403, "user_token_required")
    assert_error(
        await client.post("/v1/auth/logout", json={"all_sessions": True}, headers=bearer(owner_key)),
        403,
        "user_token_required",
    )
    assert_error(await client.get("/v1/invitations", headers=bearer(invitee_key)), 403, "user_token_required")
    # A leaked key must not mint keys that outlive its own revocation.
    assert_error(
        await client.post("/v1/api-keys", json={"name": "child"}, headers=bearer(owner_key)), 403, "user_token_required"
    )
    for action in ("accept", "decline"):
        response = await client.post(f"/v1/invitations/{invitation.json()['id']}/{action}", headers=bearer(invitee_key))
        assert_error(response, 403, "user_token_required")

    # Nothing happened: one team only, the login still works, the invitation is still pending.
    assert len((await client.get("/v1/workspaces", headers=owner.headers)).json()["data"]) == 2
    assert (await client.get("/v1/me", headers=owner.headers)).status_code == 200
    pending = (await client.get("/v1/invitations", headers=invitee.headers)).json()["data"]
    assert [i["status"] for i in pending] == ["pending"]


async def test_a_key_dies_with_its_creators_membership(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    member, admin = accounts["member"], accounts["admin"]
    removed_key = await create_key(client, member.in_workspace(workspace_id))
    leaving_key = await create_key(client, admin.in_workspace(workspace_id))
    personal_key = await create_key(client, member.headers)
    for key in (removed_key, leaving_key):
        assert (await client.get("/v1/me", headers=bearer(key["key"]))).status_code == 200

    removed = await client.delete(f"/v1/workspaces/{workspace_id}/members/{member.user_id}", headers=admin.headers)
    assert removed.status_code == 204
    assert_error(await client.get("/v1/me", headers=bearer(removed_key["key"])), 401, "invalid_api_key")
    assert_error(
        await client.get(f"/v1/workspaces/{workspace_id}/members", headers=bearer(removed_key["key"])),
        401,
        "invalid_api_key",
    )
    # The member's key for their own workspace is unaffected.
    assert (await client.get("/v1/me", headers=bearer(personal_key["key"]))).status_code == 200

    left = await client.delete(f"/v1/workspaces/{workspace_id}/members/{admin.user_id}", headers=admin.headers)
    assert left.status_code == 204
    assert_error(await client.get("/v1/me", headers=bearer(leaving_key["key"])), 401, "invalid_api_key")


async def test_the_plaintext_key_is_not_stored(client: httpx.AsyncClient, signup, db_engine: AsyncEngine) -> None:
    account = await signup()
    created = await create_key(client, account.headers)
    secret = created["key"]
    hidden_part = secret[len(created["prefix"]) :]
    assert len(hidden_part) >= 32

    async with db_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM api_keys"))).mappings().all()
        assert len(rows) == 1
        [row] = rows
        for column, value in row.items():
            assert hidden_part not in str(value), column
        assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
        assert row["prefix"] == created["prefix"]

        # Nor anywhere else in the database.
        for table in Base.metadata.sorted_tables:
            for other in (await conn.execute(text(f"SELECT * FROM {table.name}"))).all():
                assert all(hidden_part not in str(value) for value in other), table.name


async def test_a_removed_members_key_stays_dead(client: httpx.AsyncClient, signup) -> None:
    owner, member = await signup("owner"), await signup("member")
    workspace_id = (await client.post("/v1/workspaces", json={"name": "Team"}, headers=owner.headers)).json()["id"]
    invitation = await client.post(
        f"/v1/workspaces/{workspace_id}/invitations", json={"email": member.email}, headers=owner.headers
    )
    joined = await client.post(f"/v1/invitations/{invitation.json()['id']}/accept", headers=member.headers)
    assert joined.status_code == 200
    key = await create_key(client, member.in_workspace(workspace_id))
    removed = await client.delete(f"/v1/workspaces/{workspace_id}/members/{member.user_id}", headers=owner.headers)
    assert removed.status_code == 204
    assert_error(await client.get("/v1/me", headers=bearer(key["key"])), 401, "invalid_api_key")

    # Re-invited later: the old secret must not come back to life.
    invitation = await client.post(
        f"/v1/workspaces/{workspace_id}/invitations", json={"email": member.email}, headers=owner.headers
    )
    accepted = await client.post(f"/v1/invitations/{invitation.json()['id']}/accept", headers=member.headers)
    assert accepted.status_code == 200
    assert_error(await client.get("/v1/me", headers=bearer(key["key"])), 401, "invalid_api_key")
