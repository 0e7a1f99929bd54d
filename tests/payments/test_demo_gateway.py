"""The embedded default's demo gateway: its hosted page, a signed notification through the
same intake and fulfilment as SSLCommerz's, and the browser's form POST back."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from lipika.billing.models import EntryKind
from tests.fixtures.ledger import Books
from tests.payments.conftest import workspace

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _hidden_form(page: str) -> tuple[str, dict[str, str]]:
    action = html.unescape(re.search(r'<form id="back" method="post" action="([^"]+)"', page)[1])
    fields = {
        html.unescape(k): html.unescape(v)
        for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)
    }
    return action, fields


@pytest.mark.parametrize(
    ("action", "state", "credits"),
    [("pay", "paid", 500_000_000), ("fail", "failed", 0), ("cancel", "cancelled", 0)],
)
async def test_a_person_pays_fails_or_cancels_on_the_demo_page(
    client: httpx.AsyncClient, signup, books: Books, action: str, state: str, credits: int
) -> None:
    buyer = await signup()
    started = await client.post(
        "/v1/billing/checkout", json={"pack": "credits-500"}, headers=buyer.headers
    )
    assert started.status_code == 201, started.text
    assert started.json()["order"]["gateway"] == "demo"
    page_path = urlsplit(started.json()["gateway_url"]).path
    page = await client.get(page_path)
    assert page.status_code == 200 and "500.00 BDT" in page.text

    chosen = await client.post(page_path, content=urlencode({"action": action}), headers=FORM)
    assert chosen.status_code == 200, chosen.text
    return_url, fields = _hidden_form(chosen.text)
    assert fields["verify_sign"] and fields["tran_id"] == started.json()["order"]["tran_id"]
    back = await client.post(urlsplit(return_url).path, content=urlencode(fields), headers=FORM)
    assert back.status_code == 303
    assert back.headers["location"].endswith(f"state={state}")

    bought = [e.amount for e in await books.entries(workspace(buyer), EntryKind.PURCHASE)]
    assert bought == ([credits] if credits else [])
    again = await client.post(page_path, content=urlencode({"action": "pay"}), headers=FORM)
    assert again.status_code == 404  # the session is over
    await books.assert_balanced()


async def test_a_tampered_demo_notification_is_refused(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    buyer = await signup()
    started = await client.post(
        "/v1/billing/checkout", json={"pack": "credits-500"}, headers=buyer.headers
    )
    page_path = urlsplit(started.json()["gateway_url"]).path
    chosen = await client.post(page_path, content=urlencode({"action": "cancel"}), headers=FORM)
    _, fields = _hidden_form(chosen.text)
    forged = {**fields, "status": "VALID", "val_id": "x"}
    answer = await client.post(
        "/v1/payments/sslcommerz/ipn", content=urlencode(forged), headers=FORM
    )
    assert answer.json() == {"status": "forged", "result": None}
    assert await books.entries(workspace(buyer), EntryKind.PURCHASE) == []
    await books.assert_balanced()


async def test_checkout_refusals_are_typed(client: httpx.AsyncClient, signup, team) -> None:
    buyer = await signup()
    cases = [
        ({"pack": "no-such-pack"}, 400, "unknown_offer"),
        ({"plan": "free"}, 400, "unknown_offer"),
        ({"plan": "pro", "period": "week"}, 422, "validation_error"),
        ({"pack": "credits-500", "plan": "pro"}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"seats": 2}, 409, "subscription_conflict"),
    ]
    for body, status, code in cases:
        response = await client.post("/v1/billing/checkout", json=body, headers=buyer.headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
            body,
            response.text,
        )
    workspace_id, members = await team()
    member = await client.post(
        "/v1/billing/checkout",
        json={"pack": "credits-500"},
        headers=members["member"].in_workspace(workspace_id),
    )
    assert member.status_code == 403


async def test_notifications_that_are_not_forms_are_refused_quietly(
    client: httpx.AsyncClient,
) -> None:
    for body in (
        b"",
        b"\xff\xfe",
        b"a=1&a=2",
        b"%00=1",
        b"status=VALID&tran_id=x\x00",
        b"tran_id=%00",
        "verify_key=a&a=1&verify_sign=é".encode(),
    ):
        answer = await client.post("/v1/payments/sslcommerz/ipn", content=body, headers=FORM)
        assert answer.status_code == 200 and answer.json()["status"] in ("forged", "replayed"), body
        back = await client.post(
            "/v1/payments/sslcommerz/return/success", content=body, headers=FORM
        )
        assert back.status_code == 303 and back.headers["location"].endswith("state=unknown")


async def test_the_catalogue_serves_plan_prices_and_packs(
    client: httpx.AsyncClient, signup
) -> None:
    buyer = await signup()
    body = (await client.get("/v1/billing/catalogue", headers=buyer.headers)).json()
    plans = {p["id"]: p for p in body["plans"]}
    assert set(plans) == {"pro", "team"}  # the free plan is not sold
    assert plans["pro"]["prices"] == {"month": 150_000, "year": 1_500_000}
    assert plans["pro"]["credits_per_period"] == {"month": 2_000_000_000, "year": 24_000_000_000}
    assert plans["team"]["seat_prices"] == {"month": 120_000, "year": 1_200_000}
    assert plans["team"]["credits_per_period"]["month"] == 2_500_000_000
    assert {p["id"]: (p["price"], p["credits"]) for p in body["packs"]} == {
        "credits-500": (50_000, 500_000_000),
        "credits-2500": (225_000, 2_500_000_000),
    }


async def test_the_demo_pages_are_not_served_with_a_real_gateway(shop) -> None:  # noqa: ANN001
    for method in ("GET", "POST"):
        response = await shop.http.request(method, "/v1/payments/demo/anything")
        assert response.status_code == 404, response.text
