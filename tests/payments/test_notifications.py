"""Checkout and the gateway's notifications against the fake SSLCommerz, over real HTTP: one
fulfilment per tran_id, whatever arrives, in whatever order; every attack leaves zero credits
granted and the order unchanged; the ledger audit balances after each scenario."""

from __future__ import annotations

import asyncio
import collections
import re

import httpx
import pytest

from lipika.billing.models import EntryKind
from tests.fixtures.ledger import Books
from tests.payments.conftest import Shop, workspace

PACK = 500_000_000  # the credits-500 pack, in micro-credits


async def _bought(books: Books, account) -> list[int]:  # noqa: ANN001
    return [e.amount for e in await books.entries(workspace(account), EntryKind.PURCHASE)]


async def test_checkout_freezes_the_order_and_opens_a_gateway_session(shop: Shop, signup) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    order = started["order"]
    assert (order["state"], order["amount"], order["currency"], order["credits"]) == ("pending", "500.00", "BDT", PACK)
    assert started["gateway_url"].startswith(shop.fake.base_url + "/EasyCheckOut/")
    kind, sent = shop.fake.calls[-1]
    assert kind == "session"
    assert (sent["tran_id"], sent["total_amount"], sent["currency"]) == (order["tran_id"], "500.00", "BDT")
    assert sent["ipn_url"] == "https://api.lipika.test/v1/payments/sslcommerz/ipn"
    assert sent["success_url"].endswith("/v1/payments/sslcommerz/return/success")


async def test_a_paid_ipn_grants_the_pack_once_and_the_return_redirects(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success")

    ipn = await shop.fake.send_ipn(payment)
    assert ipn.status_code == 200 and ipn.json() == {"status": "accepted", "result": "fulfilled"}
    assert await _bought(books, buyer) == [PACK]
    back = await shop.browser_return(payment)  # after the IPN: same fields, nothing more
    assert back.status_code == 303
    assert back.headers["location"] == (
        f"https://app.lipika.test/billing/return?outcome=success&order={started['order']['id']}&state=paid"
    )
    assert await _bought(books, buyer) == [PACK]
    assert (await shop.order(buyer.headers, started["order"]["id"]))["state"] == "paid"
    await books.assert_balanced()


@pytest.mark.parametrize("outcome", ["fail", "cancel"])
async def test_a_failed_or_cancelled_payment_grants_nothing(shop: Shop, signup, books: Books, outcome: str) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], outcome)
    await shop.fake.send_ipn(payment)
    back = await shop.browser_return(payment)
    state = {"fail": "failed", "cancel": "cancelled"}[outcome]
    assert back.headers["location"].endswith(f"state={state}")
    assert await _bought(books, buyer) == []
    await books.assert_balanced()


async def test_a_browser_return_before_or_instead_of_the_ipn_fulfils_once(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success")
    back = await shop.browser_return(payment)  # the IPN is late (or never comes)
    assert back.headers["location"].endswith("state=paid")
    assert await _bought(books, buyer) == [PACK]
    late = await shop.fake.send_ipn(payment)
    assert late.json() == {"status": "accepted", "result": "already_settled"}
    assert await _bought(books, buyer) == [PACK]
    await books.assert_balanced()


# -- attacks: zero credits granted, the order unchanged ---------------------------------------


async def _unchanged(shop: Shop, buyer, order: dict, books: Books) -> None:  # noqa: ANN001
    now = await shop.order(buyer.headers, order["id"])
    assert (now["state"], now["paid_at"]) == ("pending", None)
    assert await _bought(books, buyer) == []
    await books.assert_balanced()


async def test_a_forged_signature_changes_nothing(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    genuine = shop.fake.complete(started["gateway_url"], "success")
    for forged in (
        shop.fake.forged(genuine, verify_sign="0" * 32),
        shop.fake.forged(genuine, amount="5000.00"),  # a field changed after signing
        shop.fake.forged(genuine, verify_key="status,tran_id"),  # fewer fields "signed"
    ):
        answer = await shop.fake.send_ipn(forged)
        assert answer.json() == {"status": "forged", "result": None}
        await shop.browser_return(forged)
    await _unchanged(shop, buyer, started["order"], books)
    metrics = (await shop.http.get("/metrics")).text
    assert re.search(r'lipika_webhook_deliveries_total\{intake="forged",source="sslcommerz"\} [1-9]', metrics) or re.search(
        r'lipika_webhook_deliveries_total\{source="sslcommerz",intake="forged"\} [1-9]', metrics
    ), metrics[-2000:]


async def test_a_valid_ipn_replayed_changes_nothing(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    before = await shop.order(buyer.headers, started["order"]["id"])
    for _ in range(3):
        assert (await shop.fake.send_ipn(payment)).json() == {"status": "replayed", "result": None}
    assert await shop.order(buyer.headers, started["order"]["id"]) == before
    assert await _bought(books, buyer) == [PACK]
    await books.assert_balanced()


@pytest.mark.postgres
async def test_the_same_ipn_20_times_at_once_fulfils_once(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success")
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        answers = await asyncio.gather(*(shop.fake.send_ipn(payment, http) for _ in range(20)))
    intakes = collections.Counter(a.json()["status"] for a in answers)
    assert intakes == {"accepted": 1, "replayed": 19}
    assert await _bought(books, buyer) == [PACK]
    await books.assert_balanced()


@pytest.mark.postgres
async def test_ipn_and_browser_returns_racing_fulfil_once(shop: Shop, signup, books: Books) -> None:
    """Different bodies (so each is stored), all at once: the order moves once."""
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success")
    variants = [shop.fake.forged(payment, value_b=str(i)) for i in range(10)]
    resigned = [type(payment)(shop.fake.signed(v.fields), v.return_url, v.ipn_url) for v in variants]
    answers = await asyncio.gather(
        *(shop.fake.send_ipn(p) for p in resigned), *(shop.browser_return(p) for p in resigned)
    )
    results = collections.Counter(a.json()["result"] for a in answers[:10])
    assert results["fulfilled"] <= 1 and results["fulfilled"] + results["already_settled"] == 10
    assert all(a.status_code == 303 and a.headers["location"].endswith("state=paid") for a in answers[10:])
    assert (await shop.order(buyer.headers, started["order"]["id"]))["state"] == "paid"
    assert await _bought(books, buyer) == [PACK]
    await books.assert_balanced()


@pytest.mark.parametrize("change", [{"amount": "499.00"}, {"amount": "500.01"}, {"currency": "USD"}])
async def test_a_payment_that_differs_from_the_order_grants_nothing(
    shop: Shop, signup, books: Books, change: dict
) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success", **change)  # signed by the gateway
    assert (await shop.fake.send_ipn(payment)).json() == {"status": "accepted", "result": "mismatch"}
    await shop.browser_return(payment)
    await _unchanged(shop, buyer, started["order"], books)


async def test_an_unknown_tran_id_changes_nothing(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success")
    stranger = type(payment)(
        shop.fake.signed({**payment.fields, "tran_id": "LPNOSUCHORDER"}), payment.return_url, payment.ipn_url
    )
    assert (await shop.fake.send_ipn(stranger)).json() == {"status": "accepted", "result": "unknown_order"}
    back = await shop.browser_return(stranger)
    assert back.headers["location"].endswith("state=unknown")
    await _unchanged(shop, buyer, started["order"], books)


async def test_a_val_id_of_another_order_changes_nothing(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    paid = await shop.checkout(buyer.headers, pack="credits-500")
    target = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(paid["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    borrowed = type(payment)(
        shop.fake.signed({**payment.fields, "tran_id": target["order"]["tran_id"]}), payment.return_url, payment.ipn_url
    )
    assert (await shop.fake.send_ipn(borrowed)).json() == {"status": "accepted", "result": "mismatch"}
    now = await shop.order(buyer.headers, target["order"]["id"])
    assert now["state"] == "pending"
    assert await _bought(books, buyer) == [PACK]  # the first order's, only
    await books.assert_balanced()


async def test_validation_answering_invalid_transaction_changes_nothing(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success")
    shop.fake.by_val_id.clear()  # the gateway knows no such validation
    assert (await shop.fake.send_ipn(payment)).json() == {"status": "accepted", "result": "invalid_transaction"}
    await _unchanged(shop, buyer, started["order"], books)


async def test_a_risky_payment_is_held_until_an_operator_approves_it(
    shop: Shop, signup, books: Books, operator
) -> None:
    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    payment = shop.fake.complete(started["gateway_url"], "success", risk_level="1")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "held"
    assert (await shop.order(buyer.headers, started["order"]["id"]))["state"] == "held"
    assert await _bought(books, buyer) == []
    ops = await operator()
    refused = await shop.http.post(f"/v1/operator/orders/{started['order']['id']}/approve", headers=buyer.headers)
    assert refused.status_code == 403
    approved = await shop.http.post(f"/v1/operator/orders/{started['order']['id']}/approve", headers=ops.headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "paid"
    again = await shop.http.post(f"/v1/operator/orders/{started['order']['id']}/approve", headers=ops.headers)
    assert again.status_code == 409
    assert await _bought(books, buyer) == [PACK]
    await books.assert_balanced()


async def test_a_lost_ipn_is_fulfilled_by_reconciliation(shop: Shop, signup, books: Books) -> None:
    from datetime import timedelta

    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    shop.fake.complete(started["gateway_url"], "success")  # paid; the IPN never arrives
    report = await shop.payments.recheck_pending(timedelta(0), timedelta(days=1))
    assert report["fulfilled"] == 1
    assert (await shop.order(buyer.headers, started["order"]["id"]))["state"] == "paid"
    again = await shop.payments.recheck_pending(timedelta(0), timedelta(days=1))
    assert again["fulfilled"] == 0
    assert await _bought(books, buyer) == [PACK]
    await books.assert_balanced()


async def test_an_unpaid_order_expires_after_the_expiry(shop: Shop, signup, books: Books) -> None:
    from datetime import timedelta

    buyer = await signup()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    report = await shop.payments.recheck_pending(timedelta(0), timedelta(0))
    assert report["expired"] >= 1
    assert (await shop.order(buyer.headers, started["order"]["id"]))["state"] == "expired"
    await books.assert_balanced()
