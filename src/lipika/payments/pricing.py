"""What an offer costs: a pack, a plan period (new, renewal, prorated upgrade) or seats,
priced against the workspace's subscription. Pure: no database, no gateway."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lipika.billing.plans import PERIODS, Plan, PlanCatalogue
from lipika.payments.errors import SubscriptionConflict, UnknownOffer
from lipika.payments.models import RUNNING, OrderKind, Subscription
from lipika.payments.periods import prorate_down, prorate_up, remaining_fraction

MIN_AMOUNT = 1_000  # paisa: SSLCommerz takes 10.00 to 500000.00 BDT
MAX_AMOUNT = 50_000_000


def format_amount(paisa: int) -> str:
    return f"{paisa // 100}.{paisa % 100:02d}"


def parse_amount(text: Any) -> int | None:
    """Posted BDT ("1500.00") to paisa; None unless it is an exact amount of paisa."""
    try:
        value = Decimal(str(text)) * 100
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or value != value.to_integral_value():
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class Offer:
    """What a checkout asks for: a pack, a plan and period, or more seats."""

    pack: str | None = None
    plan: str | None = None
    period: str | None = None
    seats: int | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    kind: OrderKind
    item: str
    amount: int
    credits: int
    period: str | None = None
    seats: int = 0
    subscription_id: uuid.UUID | None = None
    period_start: datetime | None = None
    label: str = ""


@dataclass(frozen=True)
class Pricing:
    plans: PlanCatalogue

    def quote(self, offer: Offer, subscription: Subscription | None, now: datetime) -> Quote:
        """Prices an offer against the workspace's subscription (renewal, upgrade, seats)."""
        if offer.pack is not None:
            pack = self.plans.packs.get(offer.pack)
            if pack is None:
                raise UnknownOffer(
                    f"no credit pack named {offer.pack!r}", packs=sorted(self.plans.packs)
                )
            return Quote(OrderKind.PACK, pack.name, pack.price, pack.credits, label=pack.label)
        running = subscription if subscription and subscription.state in RUNNING else None
        if offer.plan is None:
            return self._seats_quote(offer, running, now)
        plan = self.sold_plan(offer.plan)
        period = offer.period or "month"
        if period not in PERIODS:
            raise UnknownOffer(f"periods are {sorted(PERIODS)}, not {period!r}", param="period")
        # A flat plan has no seat limit (0 seats); a team plan sells its seats.
        seats = 0
        if plan.per_seat:
            seats = offer.seats or (running.seats if running and running.seats else 1)
        price = plan.price_for(period, seats)
        if price is None:
            raise UnknownOffer(f"plan {plan.name!r} is not sold per {period}")
        credits = plan.credits_for(period, seats)
        if running is None:
            return Quote(OrderKind.PLAN, plan.name, price, credits, period, seats, label=plan.label)
        current = self.sold_plan(running.plan)
        if plan.name == running.plan or plan.rank < current.rank:
            # A renewal, or the next period on a lower plan: paid now, from the current end.
            return Quote(
                OrderKind.PLAN,
                plan.name,
                price,
                credits,
                period,
                seats,
                subscription_id=running.id,
                period_start=running.current_period_end,
                label=plan.label,
            )
        if period != running.period:
            raise SubscriptionConflict(
                "an upgrade keeps the current billing period; change the period at renewal",
                param="period",
            )
        remaining, total = remaining_fraction(
            running.current_period_start, running.current_period_end, now
        )
        old_price = current.price_for(running.period, running.seats) or 0
        old_credits = current.credits_for(running.period, running.seats)
        return Quote(
            OrderKind.PLAN,
            plan.name,
            prorate_up(max(0, price - old_price), remaining, total),
            prorate_down(max(0, credits - old_credits), remaining, total),
            period,
            seats,
            subscription_id=running.id,
            label=f"{plan.label} (upgrade)",
        )

    def _seats_quote(self, offer: Offer, running: Subscription | None, now: datetime) -> Quote:
        if not offer.seats:
            raise UnknownOffer("name a pack, a plan, or a number of seats to add")
        if running is None or not self.sold_plan(running.plan).per_seat:
            raise SubscriptionConflict("seats are added to a running team subscription")
        plan = self.sold_plan(running.plan)
        remaining, total = remaining_fraction(
            running.current_period_start, running.current_period_end, now
        )
        price = plan.price_for(running.period, offer.seats) or 0
        return Quote(
            OrderKind.SEATS,
            plan.name,
            prorate_up(price, remaining, total),
            prorate_down(plan.credits_for(running.period, offer.seats), remaining, total),
            running.period,
            offer.seats,
            subscription_id=running.id,
            label=f"{offer.seats} more seats on {plan.label}",
        )

    def sold_plan(self, name: str) -> Plan:
        plan = self.plans.get(name)
        if plan is None or not plan.sold:
            sold = sorted(n for n, p in self.plans.plans.items() if p.sold)
            raise UnknownOffer(f"no plan for sale named {name!r}", plans=sold)
        return plan

    def renewal_offer(self, subscription: Subscription) -> Offer:
        """What renewing buys: the next period of the plan (or the one chosen for it)."""
        plan = self.plans.get(subscription.next_plan or subscription.plan)
        seats = subscription.next_seats or subscription.seats
        return Offer(
            plan=subscription.next_plan or subscription.plan,
            period=subscription.period,
            seats=seats if plan is not None and plan.per_seat else None,
        )
