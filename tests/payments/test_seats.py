"""Seats: a team subscription's seat count limits members and pending invitations (402
`seat_limit_reached`, saying how to add seats); added seats count once paid; fewer seats at a
renewal never remove members."""

from __future__ import annotations

from tests.fixtures.ledger import Books
from tests.payments.conftest import Shop, paid


async def _invite(shop: Shop, headers, team: str, email: str):  # noqa: ANN001, ANN202
    return await shop.http.post(f"/v1/workspaces/{team}/invitations", json={"email": email}, headers=headers)


async def test_members_beyond_the_seats_are_refused_until_seats_are_added(shop: Shop, signup, books: Books) -> None:
    owner, first, second = await signup("owner"), await signup("first"), await signup("second")
    team = (await shop.http.post("/v1/workspaces", json={"name": "Seats"}, headers=owner.headers)).json()["id"]
    headers = owner.in_workspace(team)
    await paid(shop, headers, plan="team", period="month", seats=2)

    invited = await _invite(shop, headers, team, first.email)
    assert invited.status_code == 201, invited.text
    refused = await _invite(shop, headers, team, second.email)
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "seat_limit_reached" and '{"seats": n}' in error["message"]
    assert error["details"] == {"seats": 2, "used": 2}

    started = await shop.checkout(headers, seats=1)  # seats count once paid
    assert (await _invite(shop, headers, team, second.email)).status_code == 402
    payment = shop.fake.complete(started["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    assert (await _invite(shop, headers, team, second.email)).status_code == 201
    await books.assert_balanced()


async def test_fewer_seats_at_renewal_never_remove_members(shop: Shop, signup, books: Books) -> None:
    owner, member = await signup("owner"), await signup("member")
    team = (await shop.http.post("/v1/workspaces", json={"name": "Seats"}, headers=owner.headers)).json()["id"]
    headers = owner.in_workspace(team)
    await paid(shop, headers, plan="team", period="month", seats=2)
    invitation = (await _invite(shop, headers, team, member.email)).json()["id"]
    accepted = await shop.http.post(f"/v1/invitations/{invitation}/accept", headers=member.headers)
    assert accepted.status_code == 200, accepted.text

    await shop.http.post("/v1/billing/subscription/change", json={"seats": 1}, headers=headers)
    refused = await shop.http.post("/v1/billing/subscription/renewal", headers=headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "seats_in_use"
    members = (await shop.http.get(f"/v1/workspaces/{team}/members", headers=headers)).json()["data"]
    assert len(members) == 2  # the owner chooses whom to remove
    await books.assert_balanced()
