"""Refunds: an operator refunds through the gateway; the credits go back by one idempotent
entry, as many as are left when some were spent."""

from __future__ import annotations

from lipika.billing.models import EntryKind
from tests.fixtures.ledger import Books
from tests.payments.conftest import Shop, paid, workspace

PACK = 500_000_000


async def test_an_operator_refunds_a_paid_pack(shop: Shop, signup, books: Books, operator) -> None:
    buyer, ops = await signup(), await operator()
    order = await paid(shop, buyer.headers, pack="credits-500")
    before = await books.state(workspace(buyer))

    refused = await shop.http.post(f"/v1/operator/orders/{order['id']}/refund", json={"reason": "asked"}, headers=buyer.headers)
    assert refused.status_code == 403
    done = await shop.http.post(f"/v1/operator/orders/{order['id']}/refund", json={"reason": "customer asked"}, headers=ops.headers)
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["refund_status"]) == ("refunded", "refunded")
    refund_call = [p for kind, p in shop.fake.calls if kind == "transaction" and "refund_amount" in p]
    assert [(p["refund_amount"], p["refund_remarks"]) for p in refund_call] == [("500.00", "customer asked")]
    entries = await books.entries(workspace(buyer), EntryKind.REFUND)
    assert [e.amount for e in entries] == [-PACK]
    assert (await books.state(workspace(buyer))).balance == before.balance - PACK

    again = await shop.http.post(f"/v1/operator/orders/{order['id']}/refund", json={"reason": "again"}, headers=ops.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "order_not_refundable"
    assert len(await books.entries(workspace(buyer), EntryKind.REFUND)) == 1
    await books.assert_balanced()


async def test_a_refund_of_credits_already_spent_takes_back_what_is_left(
    shop: Shop, signup, books: Books, operator
) -> None:
    buyer, ops = await signup(), await operator()
    order = await paid(shop, buyer.headers, pack="credits-500")
    await books.set_available(workspace(buyer), 120_000_000)  # the rest was spent
    done = await shop.http.post(f"/v1/operator/orders/{order['id']}/refund", json={"reason": "chargeback"}, headers=ops.headers)
    assert done.status_code == 200, done.text
    [entry] = await books.entries(workspace(buyer), EntryKind.REFUND)
    assert entry.amount == -120_000_000
    assert "380000000 micro-credits already spent" in entry.reason
    assert (await books.state(workspace(buyer))).available == 0
    await books.assert_balanced()


async def test_an_unpaid_order_cannot_be_refunded(shop: Shop, signup, books: Books, operator) -> None:
    buyer, ops = await signup(), await operator()
    started = await shop.checkout(buyer.headers, pack="credits-500")
    refused = await shop.http.post(
        f"/v1/operator/orders/{started['order']['id']}/refund", json={"reason": "nothing paid"}, headers=ops.headers
    )
    assert refused.status_code == 409
    missing = await shop.http.post(
        "/v1/operator/orders/00000000-0000-0000-0000-000000000000/refund", json={"reason": "x" * 5}, headers=ops.headers
    )
    assert missing.status_code == 404
    assert [kind for kind, _ in shop.fake.calls].count("transaction") == 0
    await books.assert_balanced()


async def test_a_refund_still_processing_is_followed_by_reconciliation(
    shop: Shop, signup, books: Books, operator
) -> None:
    from datetime import timedelta

    buyer, ops = await signup(), await operator()
    order = await paid(shop, buyer.headers, pack="credits-500")
    shop.fake.refund_initiate_status = "processing"
    done = await shop.http.post(f"/v1/operator/orders/{order['id']}/refund", json={"reason": "slow bank"}, headers=ops.headers)
    assert (done.json()["state"], done.json()["refund_status"]) == ("refunded", "processing")
    assert [e.amount for e in await books.entries(workspace(buyer), EntryKind.REFUND)] == [-PACK]
    await shop.payments.recheck_pending(timedelta(hours=1), timedelta(days=1))
    assert (await shop.order(buyer.headers, order["id"]))["refund_status"] == "refunded"
    assert any(kind == "transaction" and "refund_ref_id" in p for kind, p in shop.fake.calls)
    await books.assert_balanced()


async def test_the_refund_and_approve_commands(shop: Shop, signup, books: Books, payments_cli) -> None:
    buyer = await signup()
    order = await paid(shop, buyer.headers, pack="credits-500")
    done = await payments_cli("payments", "refund", "--order", order["tran_id"], "--reason", "duplicate payment")
    assert done.exit_code == 0, done.output
    assert f"order {order['tran_id']} refunded" in done.stdout
    assert [e.amount for e in await books.entries(workspace(buyer), EntryKind.REFUND)] == [-PACK]
    again = await payments_cli("payments", "refund", "--order", order["id"], "--reason", "again")
    assert again.exit_code == 2 and "order_not_refundable" in again.stderr
    unknown = await payments_cli("payments", "approve", "--order", "LPNOSUCH")
    assert unknown.exit_code == 2 and "no order" in unknown.stderr
    await books.assert_balanced()
