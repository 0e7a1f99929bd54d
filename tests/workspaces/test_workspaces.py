"""Team workspaces: creation, renaming, members, invitations, roles, removal and the
`X-Workspace-Id` header."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from tests.conftest import Account


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def invite(
    client: httpx.AsyncClient, workspace_id: str, email: str, by: Account, role: str = "member"
) -> httpx.Response:
    return await client.post(
        f"/v1/workspaces/{workspace_id}/invitations", json={"email": email, "role": role}, headers=by.headers
    )


async def roles_of(client: httpx.AsyncClient, workspace_id: str, by: Account) -> dict[str, str]:
    response = await client.get(f"/v1/workspaces/{workspace_id}/members", headers=by.headers)
    assert response.status_code == 200, response.text
    return {m["user_id"]: m["role"] for m in response.json()["data"]}


async def test_creating_a_team_makes_the_creator_its_owner(client: httpx.AsyncClient, signup) -> None:
    owner = await signup("owner")
    created = await client.post("/v1/workspaces", json={"name": "Research"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    team = created.json()
    assert team["name"] == "Research"
    assert team["kind"] == "team"
    assert team["role"] == "owner"
    uuid.UUID(team["id"])

    listed = (await client.get("/v1/workspaces", headers=owner.headers)).json()
    assert listed["object"] == "list"
    assert {(w["id"], w["kind"], w["role"]) for w in listed["data"]} == {
        (owner.personal_workspace_id, "personal", "owner"),
        (team["id"], "team", "owner"),
    }

    fetched = await client.get(f"/v1/workspaces/{team['id']}", headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json() == team
    assert await roles_of(client, team["id"], owner) == {owner.user_id: "owner"}

    empty = await client.post("/v1/workspaces", json={"name": ""}, headers=owner.headers)
    assert_error(empty, 422, "validation_error")


async def test_admin_renames_member_cannot(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    renamed = await client.patch(
        f"/v1/workspaces/{workspace_id}", json={"name": "Renamed"}, headers=accounts["admin"].headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed"
    assert renamed.json()["role"] == "admin"

    refused = await client.patch(
        f"/v1/workspaces/{workspace_id}", json={"name": "Hijacked"}, headers=accounts["member"].headers
    )
    assert_error(refused, 403, "insufficient_role")
    seen = await client.get(f"/v1/workspaces/{workspace_id}", headers=accounts["owner"].headers)
    assert seen.json()["name"] == "Renamed"


async def test_every_member_sees_the_member_list(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    for account in accounts.values():
        response = await client.get(f"/v1/workspaces/{workspace_id}/members", headers=account.headers)
        assert response.status_code == 200, response.text
        members = {m["email"]: m for m in response.json()["data"]}
        assert set(members) == {a.email for a in accounts.values()}
        for role, other in accounts.items():
            assert members[other.email]["role"] == role
            assert members[other.email]["user_id"] == other.user_id
            assert members[other.email]["name"] == role


async def test_invitation_accept_flow(client: httpx.AsyncClient, signup) -> None:
    owner, invitee = await signup("owner"), await signup("invitee")
    workspace_id = (await client.post("/v1/workspaces", json={"name": "Team"}, headers=owner.headers)).json()["id"]

    # Emails are matched case-insensitively.
    created = await invite(client, workspace_id, invitee.email.upper(), owner, role="admin")
    assert created.status_code == 201, created.text
    invitation = created.json()
    assert invitation["email"] == invitee.email
    assert invitation["status"] == "pending"
    assert invitation["role"] == "admin"
    assert invitation["workspace_id"] == workspace_id

    listed = await client.get(f"/v1/workspaces/{workspace_id}/invitations", headers=owner.headers)
    assert listed.status_code == 200
    assert [i["id"] for i in listed.json()["data"]] == [invitation["id"]]

    received = await client.get("/v1/invitations", headers=invitee.headers)
    assert received.status_code == 200
    [mine] = received.json()["data"]
    assert mine["id"] == invitation["id"]
    assert mine["workspace_name"] == "Team"
    # The owner got nothing.
    assert (await client.get("/v1/invitations", headers=owner.headers)).json()["data"] == []

    accepted = await client.post(f"/v1/invitations/{invitation['id']}/accept", headers=invitee.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert await roles_of(client, workspace_id, owner) == {owner.user_id: "owner", invitee.user_id: "admin"}
    assert (await client.get("/v1/invitations", headers=invitee.headers)).json()["data"] == []

    again = await client.post(f"/v1/invitations/{invitation['id']}/accept", headers=invitee.headers)
    assert_error(again, 409, "invitation_closed")
    decline_after = await client.post(f"/v1/invitations/{invitation['id']}/decline", headers=invitee.headers)
    assert_error(decline_after, 409, "invitation_closed")
    revoke_after = await client.delete(
        f"/v1/workspaces/{workspace_id}/invitations/{invitation['id']}", headers=owner.headers
    )
    assert_error(revoke_after, 409, "invitation_closed")


async def test_decline_and_revoke(client: httpx.AsyncClient, signup) -> None:
    owner, invitee = await signup("owner"), await signup("invitee")
    workspace_id = (await client.post("/v1/workspaces", json={"name": "Team"}, headers=owner.headers)).json()["id"]

    first = (await invite(client, workspace_id, invitee.email, owner)).json()
    declined = await client.post(f"/v1/invitations/{first['id']}/decline", headers=invitee.headers)
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"
    assert_error(await client.get("/v1/me", headers=invitee.in_workspace(workspace_id)), 404, "not_found")
    assert (await client.get("/v1/invitations", headers=invitee.headers)).json()["data"] == []
    assert_error(
        await client.post(f"/v1/invitations/{first['id']}/accept", headers=invitee.headers), 409, "invitation_closed"
    )

    # A declined invitation does not block a new one; the new one can be revoked.
    second = await invite(client, workspace_id, invitee.email, owner)
    assert second.status_code == 201, second.text
    second_id = second.json()["id"]
    revoked = await client.delete(f"/v1/workspaces/{workspace_id}/invitations/{second_id}", headers=owner.headers)
    assert revoked.status_code == 204, revoked.text
    assert_error(
        await client.delete(f"/v1/workspaces/{workspace_id}/invitations/{second_id}", headers=owner.headers),
        409,
        "invitation_closed",
    )
    assert (await client.get("/v1/invitations", headers=invitee.headers)).json()["data"] == []
    assert_error(
        await client.post(f"/v1/invitations/{second_id}/accept", headers=invitee.headers), 409, "invitation_closed"
    )
    statuses = {
        i["id"]: i["status"]
        for i in (await client.get(f"/v1/workspaces/{workspace_id}/invitations", headers=owner.headers)).json()["data"]
    }
    assert statuses == {first["id"]: "declined", second_id: "revoked"}
    assert await roles_of(client, workspace_id, owner) == {owner.user_id: "owner"}
    assert_error(
        await client.delete(f"/v1/workspaces/{workspace_id}/invitations/{uuid.uuid4()}", headers=owner.headers),
        404,
        "not_found",
    )


async def test_only_the_invited_email_can_answer(client: httpx.AsyncClient, signup) -> None:
    owner, invitee, stranger = await signup("owner"), await signup("invitee"), await signup("stranger")
    workspace_id = (await client.post("/v1/workspaces", json={"name": "Team"}, headers=owner.headers)).json()["id"]
    invitation_id = (await invite(client, workspace_id, invitee.email, owner)).json()["id"]

    for action in ("accept", "decline"):
        for account in (stranger, owner):
            response = await client.post(f"/v1/invitations/{invitation_id}/{action}", headers=account.headers)
            assert_error(response, 404, "not_found")
        unknown = await client.post(f"/v1/invitations/{uuid.uuid4()}/{action}", headers=invitee.headers)
        assert_error(unknown, 404, "not_found")
    assert (await client.get("/v1/invitations", headers=stranger.headers)).json()["data"] == []

    # Another workspace's admin cannot revoke it through their own workspace either.
    elsewhere = await client.delete(
        f"/v1/workspaces/{stranger.personal_workspace_id}/invitations/{invitation_id}", headers=stranger.headers
    )
    assert_error(elsewhere, 404, "not_found")

    # Untouched: still pending, and the invitee can still accept it.
    accepted = await client.post(f"/v1/invitations/{invitation_id}/accept", headers=invitee.headers)
    assert accepted.status_code == 200, accepted.text
    assert await roles_of(client, workspace_id, owner) == {owner.user_id: "owner", invitee.user_id: "member"}


async def test_invitation_rules(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    owner, admin, member = accounts["owner"], accounts["admin"], accounts["member"]

    assert (await invite(client, workspace_id, "newcomer@example.com", admin)).status_code == 201
    duplicate = await invite(client, workspace_id, "NEWCOMER@example.com", owner)
    assert_error(duplicate, 409, "invitation_exists")

    for existing in (member.email, member.email.upper(), owner.email):
        assert_error(await invite(client, workspace_id, existing, admin), 409, "already_member")

    assert_error(await invite(client, workspace_id, "boss@example.com", admin, role="owner"), 403, "insufficient_role")
    by_owner = await invite(client, workspace_id, "boss@example.com", owner, role="owner")
    assert by_owner.status_code == 201, by_owner.text
    assert by_owner.json()["role"] == "owner"

    assert_error(await invite(client, workspace_id, "other@example.com", member), 403, "insufficient_role")
    assert_error(
        await client.get(f"/v1/workspaces/{workspace_id}/invitations", headers=member.headers), 403, "insufficient_role"
    )
    pending_id = by_owner.json()["id"]
    assert_error(
        await client.delete(f"/v1/workspaces/{workspace_id}/invitations/{pending_id}", headers=member.headers),
        403,
        "insufficient_role",
    )

    personal = await invite(client, owner.personal_workspace_id, "friend@example.com", owner)
    assert_error(personal, 400, "personal_workspace")

    bad_email = await invite(client, workspace_id, "not-an-email", owner)
    assert_error(bad_email, 422, "validation_error")

    listed = await client.get(f"/v1/workspaces/{workspace_id}/invitations", headers=admin.headers)
    emails = {i["email"] for i in listed.json()["data"]}
    # The two from the fixture (accepted) and the two created here.
    assert {"newcomer@example.com", "boss@example.com", admin.email, member.email} == emails


async def test_role_changes(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    owner, admin, member = accounts["owner"], accounts["admin"], accounts["member"]

    def change(user: Account, role: str, by: Account):
        return client.patch(
            f"/v1/workspaces/{workspace_id}/members/{user.user_id}", json={"role": role}, headers=by.headers
        )

    assert_error(await change(admin, "member", member), 403, "insufficient_role")
    assert_error(await change(member, "admin", member), 403, "insufficient_role")

    promoted = await change(member, "admin", admin)
    assert promoted.status_code == 204, promoted.text
    assert (await roles_of(client, workspace_id, owner))[member.user_id] == "admin"

    assert_error(await change(member, "owner", admin), 403, "insufficient_role")
    assert_error(await change(admin, "owner", admin), 403, "insufficient_role")
    assert_error(await change(owner, "member", admin), 403, "insufficient_role")
    assert_error(await change(owner, "admin", owner), 409, "last_owner")
    assert_error(await change(owner, "superuser", owner), 422, "validation_error")
    unknown = await client.patch(
        f"/v1/workspaces/{workspace_id}/members/{uuid.uuid4()}", json={"role": "admin"}, headers=owner.headers
    )
    assert_error(unknown, 404, "not_found")

    assert (await change(admin, "owner", owner)).status_code == 204
    # Two owners now: the first may step down, and then the second is the last.
    assert (await change(owner, "member", owner)).status_code == 204
    assert_error(await change(admin, "admin", admin), 409, "last_owner")
    assert await roles_of(client, workspace_id, admin) == {
        owner.user_id: "member",
        admin.user_id: "owner",
        member.user_id: "admin",
    }


async def test_removal_and_leaving(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    owner, admin, member = accounts["owner"], accounts["admin"], accounts["member"]

    def remove(user: Account, by: Account):
        return client.delete(f"/v1/workspaces/{workspace_id}/members/{user.user_id}", headers=by.headers)

    assert_error(await remove(admin, member), 403, "insufficient_role")
    assert_error(await remove(owner, member), 403, "insufficient_role")
    assert_error(await remove(owner, admin), 403, "insufficient_role")
    assert_error(await remove(owner, owner), 409, "last_owner")
    unknown = await client.delete(f"/v1/workspaces/{workspace_id}/members/{uuid.uuid4()}", headers=owner.headers)
    assert_error(unknown, 404, "not_found")

    # A member may leave on their own.
    left = await remove(member, member)
    assert left.status_code == 204, left.text
    assert member.user_id not in await roles_of(client, workspace_id, owner)
    assert_error(await client.get(f"/v1/workspaces/{workspace_id}", headers=member.headers), 404, "not_found")
    assert_error(await client.get("/v1/me", headers=member.in_workspace(workspace_id)), 404, "not_found")

    # Back in, then removed by an admin.
    invitation_id = (await invite(client, workspace_id, member.email, owner)).json()["id"]
    assert (await client.post(f"/v1/invitations/{invitation_id}/accept", headers=member.headers)).status_code == 200
    removed = await remove(member, admin)
    assert removed.status_code == 204, removed.text
    assert await roles_of(client, workspace_id, owner) == {owner.user_id: "owner", admin.user_id: "admin"}
    assert_error(await client.get(f"/v1/workspaces/{workspace_id}/members", headers=member.headers), 404, "not_found")

    personal = await client.delete(
        f"/v1/workspaces/{owner.personal_workspace_id}/members/{owner.user_id}", headers=owner.headers
    )
    assert_error(personal, 400, "personal_workspace")


async def test_workspace_header_selects_the_workspace(client: httpx.AsyncClient, team) -> None:
    workspace_id, accounts = await team()
    member, owner = accounts["member"], accounts["owner"]

    default = (await client.get("/v1/me", headers=member.headers)).json()
    assert default["workspace"]["id"] == member.personal_workspace_id
    assert default["workspace"]["kind"] == "personal"
    assert {w["id"] for w in default["workspaces"]} == {member.personal_workspace_id, workspace_id}

    selected = await client.get("/v1/me", headers=member.in_workspace(workspace_id))
    assert selected.status_code == 200, selected.text
    assert selected.json()["workspace"]["id"] == workspace_id
    assert selected.json()["workspace"]["kind"] == "team"
    assert selected.json()["workspace"]["role"] == "member"
    assert selected.json()["via"] == "access_token"

    # The role in the selected workspace applies (a member, not the owner of their personal one).
    key = await client.post("/v1/api-keys", json={"name": "k"}, headers=member.in_workspace(workspace_id))
    assert key.status_code == 201
    assert key.json()["workspace_id"] == workspace_id

    for foreign in (owner.personal_workspace_id, str(uuid.uuid4())):
        response = await client.get("/v1/me", headers=member.in_workspace(foreign))
        error = assert_error(response, 404, "not_found")
        assert foreign not in response.text
        assert owner.email not in response.text
        assert error["type"] == "not_found_error"

    assert_error(await client.get("/v1/me", headers=member.in_workspace("not-a-uuid")), 422, "validation_error")


async def test_an_expired_invitation_does_not_block_a_new_one(
    client: httpx.AsyncClient, team, db_engine
) -> None:
    workspace_id, accounts = await team()
    owner = accounts["owner"]
    first = await invite(client, workspace_id, "late@example.com", owner)
    assert first.status_code == 201
    async with db_engine.begin() as conn:
        await conn.execute(
            text("UPDATE invitations SET expires_at = :past WHERE email = 'late@example.com'"),
            {"past": datetime.now(UTC) - timedelta(days=1)},
        )
    second = await invite(client, workspace_id, "late@example.com", owner)
    assert second.status_code == 201, second.text
    listed = (await client.get(f"/v1/workspaces/{workspace_id}/invitations", headers=owner.headers)).json()["data"]
    statuses = {i["id"]: i["status"] for i in listed if i["email"] == "late@example.com"}
    assert statuses == {first.json()["id"]: "revoked", second.json()["id"]: "pending"}
