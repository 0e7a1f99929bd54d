"""Subscriptions paid one period at a time: each period's credits once, renewals inside the
grace period keep the subscription, after expiry a payment starts a new one; seats and
upgrades prorated to the paisa and the micro-credit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from lipika.billing.models import EntryKind
from lipika.payments.models import Subscription
from tests.fixtures.ledger import Books
from tests.payments.conftest import Shop, paid, workspace

PRO_MONTH = 2_000_000_000  # pro's monthly credits


@pytest.fixture
def clock(shop: Shop, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """The payments service's clock, set by the test."""
    now = {"t": datetime(2026, 12, 1, 12, 0, tzinfo=UTC)}
    monkeypatch.setattr(shop.payments, "clock", lambda: now["t"])
    return now


async def _grants(books: Books, account) -> list[int]:  # noqa: ANN001
    return [e.amount for e in await books.entries(workspace(account), EntryKind.GRANT)]


async def _subscription(shop: Shop, headers) -> dict:  # noqa: ANN001
    response = await shop.http.get("/v1/billing/subscription", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["subscription"]


async def _set_period(books: Books, account, start: datetime, end: datetime) -> None:  # noqa: ANN001
    async with books.sessionmaker.begin() as session:
        await session.execute(
            update(Subscription)
            .where(Subscription.workspace_id == workspace(account))
            .values(current_period_start=start, current_period_end=end)
        )


async def test_a_paid_plan_starts_a_subscription_and_grants_its_period_once(
    shop: Shop, signup, books: Books, clock
) -> None:
    buyer = await signup()
    free = await _grants(books, buyer)
    order = await paid(shop, buyer.headers, plan="pro", period="month")
    assert (order["amount"], order["credits"]) == ("1500.00", PRO_MONTH)
    sub = await _subscription(shop, buyer.headers)
    assert (sub["plan"], sub["state"], sub["period"]) == ("pro", "active", "month")
    assert sub["current_period_end"].startswith("2027-01-01T12:00")
    assert sub["renewal"]["due"] is False and sub["renewal"]["amount"] == "1500.00"
    balance = (await shop.http.get("/v1/billing/balance", headers=buyer.headers)).json()
    assert balance["plan"] == "pro"
    assert await _grants(books, buyer) == [*free, PRO_MONTH]
    await books.assert_balanced()


async def test_renewals_extend_the_period_and_grant_each_period_once(
    shop: Shop, signup, books: Books, clock
) -> None:
    buyer = await signup()
    free = await _grants(books, buyer)
    await paid(shop, buyer.headers, plan="pro", period="month")
    clock["t"] = datetime(2026, 12, 30, tzinfo=UTC)
    assert (await _subscription(shop, buyer.headers))["renewal"]["due"] is True
    renewal = await shop.http.post("/v1/billing/subscription/renewal", headers=buyer.headers)
    assert renewal.status_code == 201, renewal.text
    payment = shop.fake.complete(renewal.json()["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    sub = await _subscription(shop, buyer.headers)  # paid ahead: the period waits for its start
    assert sub["current_period_end"].startswith("2027-01-01T12:00")
    assert (sub["renewal"]["paid"], sub["renewal"]["due"]) == (True, False)
    assert await _grants(books, buyer) == [*free, PRO_MONTH]
    again = await shop.http.post("/v1/billing/subscription/renewal", headers=buyer.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "renewal_already_paid"
    clock["t"] = datetime(2027, 1, 1, 12, 1, tzinfo=UTC)
    assert (await shop.payments.age_subscriptions())["renewed"] == 1
    sub = await _subscription(shop, buyer.headers)
    assert sub["current_period_start"].startswith("2027-01-01T12:00")
    assert sub["current_period_end"].startswith("2027-02-01T12:00")
    assert (sub["state"], sub["renewal"]["paid"]) == ("active", False)
    assert await _grants(books, buyer) == [*free, PRO_MONTH, PRO_MONTH]
    assert (await shop.payments.age_subscriptions())["renewed"] == 0
    keys = [e.idempotency_key for e in await books.entries(workspace(buyer), EntryKind.GRANT)][len(free):]
    assert len(set(keys)) == 2 and all(k.startswith(f"period:{sub['id']}:") for k in keys)
    await books.assert_balanced()


async def test_unused_period_credits_expire_when_the_next_period_is_granted(
    shop: Shop, signup, books: Books, clock
) -> None:
    """Period credits are spent first: what the period did not use of them expires, once; the
    free credits and packs stay."""
    buyer = await signup()
    await paid(shop, buyer.headers, plan="pro", period="month")
    await paid(shop, buyer.headers, pack="credits-500")
    await books.post(workspace(buyer), -300_000_000, kind=EntryKind.USAGE)  # 300 credits used
    before = (await books.state(workspace(buyer))).balance
    renewal = await shop.http.post("/v1/billing/subscription/renewal", headers=buyer.headers)
    payment = shop.fake.complete(renewal.json()["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    assert await books.entries(workspace(buyer), EntryKind.EXPIRY) == []  # the period still runs
    clock["t"] = datetime(2027, 1, 1, 12, 1, tzinfo=UTC)
    await shop.payments.age_subscriptions()
    [expiry] = await books.entries(workspace(buyer), EntryKind.EXPIRY)
    assert expiry.amount == -(PRO_MONTH - 300_000_000)
    assert (await books.state(workspace(buyer))).balance == before - (PRO_MONTH - 300_000_000) + PRO_MONTH
    await shop.fake.send_ipn(payment)  # a replay, another pass: nothing more expires
    await shop.payments.age_subscriptions()
    assert len(await books.entries(workspace(buyer), EntryKind.EXPIRY)) == 1
    await books.assert_balanced()


async def test_unpaid_goes_past_due_then_a_late_renewal_in_grace_keeps_it(
    shop: Shop, signup, books: Books, clock
) -> None:
    buyer = await signup()
    await paid(shop, buyer.headers, plan="pro", period="month")
    clock["t"] = datetime(2027, 1, 3, tzinfo=UTC)  # the period ended on 1 January
    await shop.payments.age_subscriptions()
    sub = await _subscription(shop, buyer.headers)
    assert sub["state"] == "past_due" and sub["grace_until"].startswith("2027-01-08T12:00")
    balance_before = (await books.state(workspace(buyer))).balance
    renewal = await shop.http.post("/v1/billing/subscription/renewal", headers=buyer.headers)
    payment = shop.fake.complete(renewal.json()["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    renewed = await _subscription(shop, buyer.headers)
    assert (renewed["id"], renewed["state"]) == (sub["id"], "active")  # the same subscription
    assert renewed["current_period_start"].startswith("2027-01-01T12:00")  # no gap, no free days
    assert renewed["current_period_end"].startswith("2027-02-01T12:00")
    # The new period's credits replace what was left of the last period's (all of it here).
    expired = [e.amount for e in await books.entries(workspace(buyer), EntryKind.EXPIRY)]
    assert expired == [-PRO_MONTH]
    assert (await books.state(workspace(buyer))).balance == balance_before - PRO_MONTH + PRO_MONTH
    await books.assert_balanced()


async def test_after_the_grace_period_it_expires_and_a_payment_starts_a_new_one(
    shop: Shop, signup, books: Books, clock
) -> None:
    buyer = await signup()
    await paid(shop, buyer.headers, plan="pro", period="month")
    clock["t"] = datetime(2027, 1, 3, tzinfo=UTC)
    await shop.payments.age_subscriptions()
    renewal = await shop.http.post("/v1/billing/subscription/renewal", headers=buyer.headers)  # not paid yet
    balance = (await books.state(workspace(buyer))).balance
    clock["t"] = datetime(2027, 1, 9, tzinfo=UTC)  # past the 7-day grace
    report = await shop.payments.age_subscriptions()
    assert report["expired"] == 1
    assert (await _subscription(shop, buyer.headers))["state"] == "expired"
    after = (await shop.http.get("/v1/billing/balance", headers=buyer.headers)).json()
    assert after["plan"] == "free" and after["balance"] == balance  # no credits are lost

    payment = shop.fake.complete(renewal.json()["gateway_url"], "success")  # paid after expiry
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    sub = await _subscription(shop, buyer.headers)
    assert sub["state"] == "active"
    assert sub["current_period_start"].startswith("2027-01-09T00:00")  # a new period from now
    assert sub["current_period_end"].startswith("2027-02-09T00:00")
    await books.assert_balanced()


async def test_a_cancelled_subscription_runs_to_period_end_then_expires(
    shop: Shop, signup, books: Books, clock
) -> None:
    buyer = await signup()
    await paid(shop, buyer.headers, plan="pro", period="month")
    cancelled = await shop.http.post("/v1/billing/subscription/cancel", headers=buyer.headers)
    assert cancelled.json()["subscription"]["state"] == "cancelled"
    assert (await shop.http.get("/v1/billing/balance", headers=buyer.headers)).json()["plan"] == "pro"
    clock["t"] = datetime(2027, 1, 1, 12, 1, tzinfo=UTC)
    await shop.payments.age_subscriptions()
    assert (await _subscription(shop, buyer.headers))["state"] == "expired"
    assert (await shop.http.get("/v1/billing/balance", headers=buyer.headers)).json()["plan"] == "free"
    await books.assert_balanced()


async def test_added_seats_are_prorated_to_the_paisa_and_the_micro_credit(
    shop: Shop, signup, books: Books, clock
) -> None:
    owner = await signup()
    created = await shop.http.post("/v1/workspaces", json={"name": "Team"}, headers=owner.headers)
    team = created.json()["id"]
    headers = owner.in_workspace(team)
    order = await paid(shop, headers, plan="team", period="month", seats=2)
    assert (order["amount"], order["credits"]) == ("2400.00", 2 * 2_500_000_000)
    # 1 December 12:00 to 1 January 12:00 is 31 days; a third of a day has passed.
    clock["t"] = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    remaining, total = 31 * 86400 - 8 * 3600, 31 * 86400
    seats = await shop.checkout(headers, seats=3)
    expected_paisa = -(-3 * 120_000 * remaining // total)
    expected_credits = 3 * 2_500_000_000 * remaining // total
    assert seats["order"]["amount"] == f"{expected_paisa // 100}.{expected_paisa % 100:02d}"
    assert seats["order"]["credits"] == expected_credits
    payment = shop.fake.complete(seats["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    assert (await _subscription(shop, headers))["seats"] == 5
    purchases = [e.amount for e in await books.entries(uuid.UUID(team), EntryKind.PURCHASE)]
    assert purchases == [expected_credits]
    await books.assert_balanced()


async def test_an_upgrade_is_prorated_now_and_grants_the_difference(
    shop: Shop, signup, books: Books, clock
) -> None:
    buyer = await signup()
    await paid(shop, buyer.headers, plan="pro", period="month")
    clock["t"] = datetime(2026, 12, 16, 12, 0, tzinfo=UTC)  # 15 of 31 days used
    upgrade = await shop.checkout(buyer.headers, plan="team", period="month", seats=3)
    remaining, total = 16 * 86400, 31 * 86400
    diff_paisa = 3 * 120_000 - 150_000
    diff_credits = 3 * 2_500_000_000 - PRO_MONTH
    assert upgrade["order"]["amount"] == f"{-(-diff_paisa * remaining // total) / 100:.2f}"
    assert upgrade["order"]["credits"] == diff_credits * remaining // total
    payment = shop.fake.complete(upgrade["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    sub = await _subscription(shop, buyer.headers)
    assert (sub["plan"], sub["seats"], sub["current_period_end"][:16]) == ("team", 3, "2027-01-01T12:00")
    assert (await shop.http.get("/v1/billing/balance", headers=buyer.headers)).json()["plan"] == "team"
    await books.assert_balanced()


async def test_a_downgrade_takes_effect_at_the_renewal(shop: Shop, signup, books: Books, clock) -> None:
    owner = await signup()
    team = (await shop.http.post("/v1/workspaces", json={"name": "Team"}, headers=owner.headers)).json()["id"]
    headers = owner.in_workspace(team)
    await paid(shop, headers, plan="team", period="month", seats=4)
    changed = await shop.http.post("/v1/billing/subscription/change", json={"seats": 2}, headers=headers)
    assert changed.status_code == 200, changed.text
    sub = changed.json()["subscription"]
    assert (sub["seats"], sub["next_seats"], sub["renewal"]["seats"], sub["renewal"]["amount"]) == (4, 2, 2, "2400.00")
    renewal = await shop.http.post("/v1/billing/subscription/renewal", headers=headers)
    payment = shop.fake.complete(renewal.json()["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    assert (await _subscription(shop, headers))["seats"] == 4  # until the period ends
    clock["t"] = datetime(2027, 1, 1, 12, 1, tzinfo=UTC)
    await shop.payments.age_subscriptions()
    sub = await _subscription(shop, headers)
    assert (sub["seats"], sub["next_seats"]) == (2, None)
    await books.assert_balanced()


async def test_two_plan_orders_paid_one_after_the_other_add_up(shop: Shop, signup, books: Books, clock) -> None:
    """Two tabs: both checked out before either was paid. The second paid period follows the
    first; nothing paid is lost to a restart."""
    buyer = await signup()
    first = await shop.checkout(buyer.headers, plan="pro", period="month")
    second = await shop.checkout(buyer.headers, plan="pro", period="month")
    for started in (first, second):
        payment = shop.fake.complete(started["gateway_url"], "success")
        assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    assert (await _subscription(shop, buyer.headers))["renewal"]["paid"] is True
    clock["t"] = datetime(2027, 1, 1, 12, 1, tzinfo=UTC)
    await shop.payments.age_subscriptions()
    sub = await _subscription(shop, buyer.headers)
    assert (sub["current_period_start"][:16], sub["current_period_end"][:16]) == ("2027-01-01T12:00", "2027-02-01T12:00")
    assert len([g for g in await _grants(books, buyer) if g == PRO_MONTH]) == 2
    await books.assert_balanced()


async def test_the_period_keys_hold_on_the_real_clock(shop: Shop, signup, books: Books) -> None:
    """Without a fixed clock (microseconds, the database's own datetimes): the renewal finds
    the last period's grant by its key and expires what is left of it."""
    buyer = await signup()
    await paid(shop, buyer.headers, plan="pro", period="month")
    renewal = await shop.http.post("/v1/billing/subscription/renewal", headers=buyer.headers)
    payment = shop.fake.complete(renewal.json()["gateway_url"], "success")
    assert (await shop.fake.send_ipn(payment)).json()["result"] == "fulfilled"
    async with books.sessionmaker.begin() as session:  # the period ends
        await session.execute(
            update(Subscription)
            .where(Subscription.workspace_id == workspace(buyer))
            .values(current_period_end=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await shop.payments.age_subscriptions())["renewed"] == 1
    assert [e.amount for e in await books.entries(workspace(buyer), EntryKind.EXPIRY)] == [-PRO_MONTH]
    await books.assert_balanced()


async def test_a_pending_order_is_looked_up_once_per_recheck_period(shop: Shop, signup, books: Books) -> None:
    buyer = await signup()
    await shop.checkout(buyer.headers, pack="credits-500")
    first = await shop.payments.recheck_pending(timedelta(0), timedelta(days=1))
    later = await shop.payments.recheck_pending(timedelta(minutes=5), timedelta(days=1))
    assert (first["checked"], later["checked"]) == (1, 0)
    await books.assert_balanced()
