"""Checkout, fulfilment, subscriptions and refunds.

An order freezes what is paid (amount, currency) and what it delivers (credits, plan, seats,
period) at checkout. Every notification about it (the IPN, the browser's return, the
reconciliation's transaction query) ends in `confirm`: the Order Validation API must confirm
the store, `tran_id`, amount and currency exactly, with status VALID or VALIDATED; then one
conditional write moves the order out of its unpaid states, and only the caller that moved it
delivers, in the same transaction, with ledger entries under idempotency keys.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.billing.plans import CURRENCY, DEFAULT_PLAN, PlanCatalogue
from lipika.billing.service import BillingService
from lipika.db import utcnow
from lipika.payments.delivery import Delivery
from lipika.payments.errors import (
    AmountBelowMinimum,
    GatewayUnavailable,
    NotRefundable,
    OrderNotFound,
    SubscriptionConflict,
)
from lipika.payments.models import (
    RUNNING,
    Order,
    OrderState,
    Subscription,
    SubscriptionState,
)
from lipika.payments.pricing import (
    MAX_AMOUNT,
    MIN_AMOUNT,
    Offer,
    Pricing,
    Quote,
    format_amount,
    parse_amount,
)
from lipika.payments.repository import PaymentsRepository
from lipika.payments.sslcommerz import VALID_STATUSES, Gateway, GatewayError

log = structlog.get_logger()

UNPAID = (OrderState.PENDING, OrderState.FAILED, OrderState.CANCELLED, OrderState.EXPIRED)
UNPAID_STATUSES = {
    "FAILED": OrderState.FAILED,
    "CANCELLED": OrderState.CANCELLED,
    "EXPIRED": OrderState.EXPIRED,
    "UNATTEMPTED": OrderState.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Buyer:
    workspace_id: uuid.UUID
    user_id: uuid.UUID | None
    email: str
    name: str


@dataclass
class Payments:
    sessionmaker: async_sessionmaker[AsyncSession]
    plans: PlanCatalogue
    gateway: Gateway
    api_url: str  # where the gateway sends the IPN and the browser back
    grace: timedelta = timedelta(days=7)
    renewal_notice: timedelta = timedelta(days=3)
    clock: Callable[[], datetime] = utcnow
    observe: Callable[[str, str], None] = lambda kind, state: None

    def __post_init__(self) -> None:
        self.pricing = Pricing(self.plans)
        self.delivery = Delivery(self.plans)

    # -- checkout ---------------------------------------------------------------------------

    def quote(self, offer: Offer, subscription: Subscription | None, now: datetime) -> Quote:
        return self.pricing.quote(offer, subscription, now)

    def renewal_offer(self, subscription: Subscription) -> Offer:
        return self.pricing.renewal_offer(subscription)

    async def checkout(self, buyer: Buyer, offer: Offer) -> tuple[Order, str]:
        """Creates the order (committed before the gateway hears of it, so no notification can
        arrive for an order we lack) and the gateway session; returns the order and the URL
        to send the buyer to. No transaction stays open across the gateway call."""
        now = self.clock()
        async with self.sessionmaker.begin() as session:
            repo = PaymentsRepository(session)
            quote = self.quote(offer, await repo.subscription(buyer.workspace_id), now)
            if quote.amount < MIN_AMOUNT or quote.amount > MAX_AMOUNT:
                raise AmountBelowMinimum(
                    f"the gateway takes payments of {format_amount(MIN_AMOUNT)} to "
                    f"{format_amount(MAX_AMOUNT)} BDT; this is {format_amount(quote.amount)}",
                    amount=format_amount(quote.amount),
                )
            order = await repo.add_order(
                Order(
                    id=uuid.uuid4(),
                    workspace_id=buyer.workspace_id,
                    user_id=buyer.user_id,
                    kind=quote.kind,
                    item=quote.item,
                    period=quote.period,
                    seats=quote.seats,
                    amount_minor=quote.amount,
                    currency=CURRENCY,
                    credits=quote.credits,
                    tran_id="LP" + secrets.token_hex(12).upper(),
                    gateway=self.gateway.name,
                    state=OrderState.PENDING,
                    subscription_id=quote.subscription_id,
                    period_start=quote.period_start,
                    created_at=now,
                    updated_at=now,
                )
            )
        try:
            opened = await self.gateway.create_session(self._session_fields(order, buyer, quote))
        except GatewayError as exc:
            log.warning("payment_session_failed", error=str(exc))
            await self._close_unpaid(order, OrderState.FAILED)
            raise GatewayUnavailable(
                "the payment gateway could not start a payment; retry shortly"
            ) from None
        async with self.sessionmaker.begin() as session:
            await PaymentsRepository(session).move_order(
                order.id, (OrderState.PENDING,), session_key=opened.session_key[:100]
            )
        order.session_key = opened.session_key
        self.observe(order.kind.value, OrderState.PENDING.value)
        return order, opened.gateway_url

    def _session_fields(self, order: Order, buyer: Buyer, quote: Quote) -> dict[str, str]:
        base = self.api_url.rstrip("/") + "/v1/payments/sslcommerz"
        return {
            "total_amount": format_amount(order.amount_minor),
            "currency": order.currency,
            "tran_id": order.tran_id,
            "success_url": f"{base}/return/success",
            "fail_url": f"{base}/return/fail",
            "cancel_url": f"{base}/return/cancel",
            "ipn_url": f"{base}/ipn",
            "product_name": quote.label or quote.item,
            "product_category": "credits",
            "product_profile": "non-physical-goods",
            "shipping_method": "NO",
            "num_of_item": "1",
            "cus_name": buyer.name or buyer.email,
            "cus_email": buyer.email,
            "cus_add1": "N/A",
            "cus_city": "N/A",
            "cus_postcode": "0000",
            "cus_country": "Bangladesh",
            "cus_phone": "N/A",
            "value_a": str(order.id),
        }

    # -- notifications and fulfilment -------------------------------------------------------

    async def order_by_tran_id(self, tran_id: str) -> Order | None:
        async with self.sessionmaker() as session:
            return await PaymentsRepository(session).order_by_tran_id(tran_id)

    async def on_notification(self, fields: Mapping[str, str]) -> str:
        """A verified notification (IPN or browser return); returns what it did."""
        order = await self.order_by_tran_id(fields.get("tran_id", ""))
        if order is None:
            return "unknown_order"
        status = fields.get("status", "")
        if status in VALID_STATUSES:
            return await self.confirm(order, fields.get("val_id", ""))
        if status in UNPAID_STATUSES:
            return await self._close_unpaid(order, UNPAID_STATUSES[status])
        return "ignored"

    async def confirm(self, order: Order, val_id: str) -> str:
        """Asks the Order Validation API about `val_id`; fulfils the order if it matches."""
        if not val_id:
            return "mismatch"
        try:
            validation = await self.gateway.validate(val_id)
        except GatewayError as exc:
            log.warning("payment_validation_failed", error=str(exc))
            return "gateway_error"  # the order stays pending: reconciliation asks again
        problem = self.mismatch(order, validation)
        if problem is not None:
            log.error("payment_not_confirmed", tran_id=order.tran_id, problem=problem)
            return "invalid_transaction" if problem == "status" else "mismatch"
        return await self.fulfil(order.id, validation)

    def mismatch(self, order: Order, validation: Mapping[str, Any]) -> str | None:
        """Which field of the validation disagrees with the order (None: it confirms it)."""
        if validation.get("status") not in VALID_STATUSES:
            return "status"
        if validation.get("tran_id") != order.tran_id:
            return "tran_id"
        store = validation.get("store_id")
        if store is not None and store != self.gateway.store_id:
            return "store_id"
        if parse_amount(validation.get("amount")) != order.amount_minor:
            return "amount"
        if validation.get("currency") != order.currency:
            return "currency"
        # For a payment made in another currency the gateway converts; the order's own
        # currency and amount are then in currency_type and currency_amount.
        if "currency_type" in validation and validation["currency_type"] != order.currency:
            return "currency"
        if (
            "currency_amount" in validation
            and parse_amount(validation["currency_amount"]) != order.amount_minor
        ):
            return "amount"
        return None

    async def fulfil(self, order_id: uuid.UUID, validation: Mapping[str, Any]) -> str:
        """Moves a confirmed order out of its unpaid states, once; delivers unless risky."""
        risky = str(validation.get("risk_level", "0")) == "1"
        now = self.clock()
        async with self.sessionmaker.begin() as session:
            repo = PaymentsRepository(session)
            moved = await repo.move_order(
                order_id,
                UNPAID,
                state=OrderState.HELD if risky else OrderState.PAID,
                val_id=str(validation.get("val_id") or "")[:100] or None,
                bank_tran_id=str(validation.get("bank_tran_id") or "")[:100] or None,
                risk_level=str(validation.get("risk_level", ""))[:5] or None,
                paid_at=None if risky else now,
                updated_at=now,
            )
            if not moved:
                return "already_settled"
            order = await repo.order(order_id)
            assert order is not None
            if not risky:
                await self.delivery.deliver(session, order, now)
        self.observe(order.kind.value, order.state.value)
        return "held" if risky else "fulfilled"

    async def approve(self, order_id: uuid.UUID) -> Order:
        """An operator's approval of a held (risky) payment: delivered now, once."""
        now = self.clock()
        async with self.sessionmaker.begin() as session:
            repo = PaymentsRepository(session)
            if not await repo.move_order(
                order_id, (OrderState.HELD,), state=OrderState.PAID, paid_at=now, updated_at=now
            ):
                raise NotRefundable("only a held order can be approved", code="order_not_held")
            order = await repo.order(order_id)
            assert order is not None
            await self.delivery.deliver(session, order, now)
        self.observe(order.kind.value, order.state.value)
        return order

    async def _close_unpaid(self, order: Order, state: OrderState) -> str:
        now = self.clock()
        async with self.sessionmaker.begin() as session:
            moved = await PaymentsRepository(session).move_order(
                order.id, (OrderState.PENDING,), state=state, updated_at=now
            )
        if moved:
            self.observe(order.kind.value, state.value)
        return state.value if moved else "already_settled"

    async def refund(self, order_id: uuid.UUID, remarks: str) -> Order:
        """Refunds a paid or held order through the gateway, and takes back its credits.

        The credits go back by one `refund` entry (key `refund:<order>`). When some were
        already spent, it takes back what is available and no more (a wallet never goes below
        zero); the reason records the shortfall, which the refund does not recover."""
        async with self.sessionmaker() as session:
            order = await PaymentsRepository(session).order(order_id)
        if order is None:
            raise OrderNotFound("no such order")
        if order.state not in (OrderState.PAID, OrderState.HELD) or not order.bank_tran_id:
            raise NotRefundable(f"an order that is {order.state.value} cannot be refunded")
        try:
            answer = await self.gateway.refund(
                order.bank_tran_id,
                format_amount(order.amount_minor),
                remarks[:255],
                f"R{order.tran_id}"[:30],
            )
        except GatewayError as exc:
            raise GatewayUnavailable(f"the refund could not be initiated: {exc}") from None
        status = str(answer.get("status", "")).lower()
        if answer.get("APIConnect") != "DONE" or status not in ("success", "processing"):
            raise GatewayUnavailable(
                f"the gateway refused the refund: {answer.get('errorReason') or status!r}"
            )
        now = self.clock()
        async with self.sessionmaker.begin() as session:
            repo = PaymentsRepository(session)
            moved = await repo.move_order(
                order.id,
                (OrderState.PAID, OrderState.HELD),
                state=OrderState.REFUNDED,
                refund_ref_id=str(answer.get("refund_ref_id") or "")[:100] or None,
                refund_status="processing" if status == "processing" else "refunded",
                refunded_at=now,
                updated_at=now,
            )
            if moved and order.state == OrderState.PAID:
                await self.delivery.take_back(session, order)
            order = await repo.order(order.id)
        assert order is not None
        self.observe(order.kind.value, order.state.value)
        return order

    async def check_refund(self, order: Order) -> str:
        """Follows a refund the gateway is still processing."""
        if not order.refund_ref_id:
            return "unknown"
        try:
            answer = await self.gateway.refund_status(order.refund_ref_id)
        except GatewayError:
            return "gateway_error"
        status = str(answer.get("status", "")).lower()
        if status in ("refunded", "cancelled", "failed"):
            async with self.sessionmaker.begin() as session:
                await PaymentsRepository(session).move_order(
                    order.id, (OrderState.REFUNDED,), refund_status=status, updated_at=self.clock()
                )
        return status

    # -- subscriptions ----------------------------------------------------------------------

    def renewal_due(self, subscription: Subscription, now: datetime) -> bool:
        return (
            subscription.renewal_order_id is None
            and subscription.state in (SubscriptionState.ACTIVE, SubscriptionState.PAST_DUE)
            and now >= subscription.current_period_end - self.renewal_notice
        )

    async def subscription(self, workspace_id: uuid.UUID) -> Subscription | None:
        async with self.sessionmaker() as session:
            return await PaymentsRepository(session).subscription(workspace_id)

    async def orders(self, workspace_id: uuid.UUID, limit: int = 50) -> list[Order]:
        async with self.sessionmaker() as session:
            return list(await PaymentsRepository(session).orders_of(workspace_id, limit))

    async def order(self, order_id: uuid.UUID) -> Order | None:
        async with self.sessionmaker() as session:
            return await PaymentsRepository(session).order(order_id)

    async def cancel(self, workspace_id: uuid.UUID) -> Subscription:
        """Cancels at period end: the plan runs until then, then the free plan."""
        async with self.sessionmaker.begin() as session:
            subscription = await PaymentsRepository(session).subscription(workspace_id, lock=True)
            if subscription is None or subscription.state not in RUNNING:
                raise SubscriptionConflict("this workspace has no running subscription")
            subscription.state = SubscriptionState.CANCELLED
            subscription.updated_at = self.clock()
        return subscription

    async def schedule_change(
        self, workspace_id: uuid.UUID, plan: str | None, seats: int | None
    ) -> Subscription:
        """A downgrade or fewer seats, from the next period on (members are never removed:
        the owner removes them before renewing with fewer seats)."""
        async with self.sessionmaker.begin() as session:
            subscription = await PaymentsRepository(session).subscription(workspace_id, lock=True)
            if subscription is None or subscription.state not in RUNNING:
                raise SubscriptionConflict("this workspace has no running subscription")
            if plan is not None:
                self.pricing.sold_plan(plan)
                subscription.next_plan = plan
            if seats is not None:
                subscription.next_seats = seats
            subscription.updated_at = self.clock()
        return subscription

    async def age_subscriptions(self) -> dict[str, int]:
        """Periodic: a period paid ahead starts when the current one ends; an unpaid ended
        period goes past due (a cancelled one expires); past the grace period, expired, and
        the workspace returns to the free plan. No credits are taken on expiry."""
        now = self.clock()
        report = {"renewed": 0, "past_due": 0, "expired": 0}
        async with self.sessionmaker.begin() as session:
            repo = PaymentsRepository(session)
            billing = BillingService(session, self.plans)
            for sub in await repo.subscriptions_due(RUNNING, now, 200):
                if sub.renewal_order_id is not None:  # paid ahead: its period starts now
                    await self.delivery.roll(session, billing, sub, now)
                    report["renewed"] += 1
            for sub in await repo.subscriptions_due((SubscriptionState.ACTIVE,), now, 200):
                sub.state = SubscriptionState.PAST_DUE
                sub.updated_at = now
                report["past_due"] += 1
            ended = [
                *await repo.subscriptions_due((SubscriptionState.CANCELLED,), now, 200),
                *await repo.subscriptions_due((SubscriptionState.PAST_DUE,), now - self.grace, 200),
            ]
            for sub in ended:
                if (
                    sub.state == SubscriptionState.PAST_DUE
                    and sub.current_period_end + self.grace > now
                ):
                    continue
                sub.state = SubscriptionState.EXPIRED
                sub.updated_at = now
                await billing.follow_subscription(
                    sub.workspace_id, DEFAULT_PLAN, allowance_due=sub.free_allowance_due
                )
                report["expired"] += 1
        return report

    # -- reconciliation ---------------------------------------------------------------------

    async def _recheck(self, order: Order, now: datetime, expire_after: timedelta) -> str:
        elements = await self.gateway.transactions(order.tran_id)
        valid = [e for e in elements if e.get("status") in VALID_STATUSES and e.get("val_id")]
        if valid and await self.confirm(order, str(valid[0]["val_id"])) == "fulfilled":
            return "fulfilled"
        if order.created_at < now - expire_after:
            if await self._close_unpaid(order, OrderState.EXPIRED) == OrderState.EXPIRED.value:
                return "expired"
        async with self.sessionmaker.begin() as session:  # checked: not again for a while
            await PaymentsRepository(session).move_order(
                order.id, (OrderState.PENDING,), updated_at=now
            )
        return "pending"

    async def recheck_pending(
        self, older_than: timedelta, expire_after: timedelta
    ) -> dict[str, int]:
        """Periodic: pending orders unchecked for `older_than` are looked up with the
        transaction query (a lost IPN, a validation that failed although the payment went
        through), each at most once per `older_than`; those the gateway knows no payment for
        expire after `expire_after`."""
        now = self.clock()
        report = {"checked": 0, "fulfilled": 0, "expired": 0}
        async with self.sessionmaker() as session:
            pending = await PaymentsRepository(session).pending_orders(now - older_than, 100)
        for order in pending:
            report["checked"] += 1
            try:
                outcome = await self._recheck(order, now, expire_after)
            except GatewayError as exc:
                log.warning("payment_query_failed", error=str(exc))
                continue
            except Exception:  # noqa: BLE001 - one order must not stop the others
                log.exception("payment_recheck_failed", tran_id=order.tran_id)
                continue
            if outcome in report:
                report[outcome] += 1
        async with self.sessionmaker() as session:
            refunding = await PaymentsRepository(session).refunds_in_progress(100)
        for order in refunding:
            await self.check_refund(order)
        return report
