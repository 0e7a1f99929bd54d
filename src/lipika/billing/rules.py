"""The admission rules, computed once, in Python: for each plan, whether it admits an entry at
all, and which limit counters an admission bumps under which caps.

The database (migration 0007 on PostgreSQL, the meter's portable path on SQLite) only does the
generic atomic part with what this module hands it: lock the wallet, pick the wallet's plan's
rule, bump each counter under its cap, count the member's monthly cap (the one cap the database
reads, from `member_caps`), insert the hold, reserve the amount. Adding a limit (seats, rate
limits, per-tool quotas) is one more `Limit` here and nothing anywhere else.

A counter's period is part of its key (`req:<ws>:<user>:<entry>:<day>`), so nothing resets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lipika.billing.errors import (
    DailyCreditCapReached,
    DailyRequestLimitReached,
    DailyUnitLimitReached,
    InsufficientCredits,
    KeyBudgetExhausted,
    MemberMonthlyCapReached,
    ModelNotInPlan,
    NotInPlan,
)
from lipika.billing.plans import Plan, PlanCatalogue
from lipika.billing.pricebook import TOKEN_UNITS, Price
from lipika.errors import LipikaError
from lipika.kit.money import format_credits

CounterKind = Literal["requests", "credits", "units"]
Scope = Literal["member", "workspace", "key"]

# A key's budget counts for the key's whole life: its counter has no period (and is not pruned).
KEY_SPEND = "keyspend"

# Refusals the database returns, "<code>:<detail>". A limit's refusal names its plan and its
# position in that plan's rule, so the error is built here from the rule itself.
NO_WALLET = "LP001"
NOT_IN_PLAN = "LP002"
LIMIT = "LPC"  # detail: "<plan>:<index of the limit>"
MEMBER_CAP = "LP005"  # detail: the cap
INSUFFICIENT = "LP006"  # detail: the available balance
DUPLICATE = "LP007"


@dataclass(frozen=True, slots=True)
class Limit:
    """One counter an admission bumps: what it counts, whose it is, and its cap."""

    kind: CounterKind
    scope: Scope
    name: str  # the key's tag: "req", "units", "wsday"
    cap: int
    refusal: Callable[[int, int, str], LipikaError]  # (cap, needed, what) -> the error

    def key(self, workspace_id: uuid.UUID, user_id: uuid.UUID | None, entry: str, day: str) -> str:
        if self.scope == "key":
            return self.name  # "keyspend:<api key id>"
        if self.scope == "workspace":
            return f"{self.name}:{workspace_id}:{day}"
        return f"{self.name}:{workspace_id}:{user_id}:{entry}:{day}"


@dataclass(frozen=True, slots=True)
class PlanRule:
    """A plan's decision for one entry: refused outright, or admitted under these limits."""

    allowed: bool
    limits: tuple[Limit, ...]


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What an API key itself allows, on top of its workspace's plan: the models it may use
    (None: all the plan allows) and the most it may spend in its life (None: no budget)."""

    id: uuid.UUID
    allowed_models: frozenset[str] | None = None
    credit_budget: int | None = None

    def allows(self, price: Price) -> bool:
        return (
            price.kind != "model"
            or self.allowed_models is None
            or (price.name in self.allowed_models)
        )

    @property
    def limits(self) -> tuple[Limit, ...]:
        """The budget, as one more credits counter of every admission made with the key."""
        if self.credit_budget is None:
            return ()
        return (
            Limit("credits", "key", key_spend_counter(self.id), self.credit_budget, _key_budget),
        )


def key_spend_counter(key_id: uuid.UUID) -> str:
    """The counter of what a key has spent and holds: captured credits plus open holds."""
    return f"{KEY_SPEND}:{key_id}"


def limits_for(plan: Plan, price: Price) -> tuple[Limit, ...]:
    """Every limit the plan puts on one entry, in the order they are checked."""
    limits: list[Limit] = []
    requests = plan.request_limit_for(price)
    if requests is not None:
        limits.append(Limit("requests", "member", "req", requests, _request_limit))
    units = plan.unit_limit_for(price)
    if units is not None:
        limits.append(Limit("units", "member", "units", units, _unit_limit))
    if plan.daily_credit_cap is not None:
        limits.append(Limit("credits", "workspace", "wsday", plan.daily_credit_cap, _daily_cap))
    return tuple(limits)


def metered_units(price: Price, max_usage: Mapping[str, int]) -> int:
    """The units a unit limit counts for one admission: the most of the entry's own units."""
    return sum(q for unit, q in max_usage.items() if unit not in TOKEN_UNITS)


@dataclass
class AdmissionRules:
    """The rules of every plan for every entry, computed once per entry and kept."""

    plans: PlanCatalogue
    _by_price: dict[str, dict[str, PlanRule]] | None = None

    def for_price(self, price: Price) -> Mapping[str, PlanRule]:
        if self._by_price is None:
            self._by_price = {}
        rules = self._by_price.get(price.name)
        if rules is None:
            rules = {
                plan.name: PlanRule(plan.allows_price(price), limits_for(plan, price))
                for plan in self.plans.plans.values()
            }
            self._by_price[price.name] = rules
        return rules

    def encode(
        self,
        price: Price,
        *,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        amount: int,
        units: int,
        day: str,
        extra: tuple[Limit, ...] = (),
    ) -> dict[str, list[Any]]:
        """{plan: [refusal or None, [[key, amount, cap, kind, limit index], ...]]}: what the
        database checks (a refused counter's index comes back in the refusal). `extra` limits
        (an API key's budget) follow the plan's own in every plan's rule.

        Member-scoped limits need a member: an admission without one skips them.
        """
        encoded: dict[str, list[Any]] = {}
        for name, rule in self.for_price(price).items():
            if not rule.allowed:
                encoded[name] = [NOT_IN_PLAN, []]
                continue
            counters = [
                [limit.key(workspace_id, user_id, price.name, day), by, limit.cap, limit.kind, i]
                for i, limit in enumerate((*rule.limits, *extra))
                if (by := _amount(limit, amount, units)) is not None
                and (limit.scope != "member" or user_id is not None)
            ]
            encoded[name] = [None, counters]
        return encoded

    def refused_limit(
        self, refusal: str, price: Price, default_plan: Plan, extra: tuple[Limit, ...] = ()
    ) -> Limit | None:
        """The limit a "LPC:<plan>:<index>" refusal names."""
        code, _, detail = refusal.partition(":")
        if code != LIMIT:
            return None
        plan_name, _, index = detail.rpartition(":")
        plan = self.plans.get(plan_name) or default_plan
        return (*self.for_price(price)[plan.name].limits, *extra)[int(index)]

    def refusal(
        self,
        refusal: str,
        price: Price,
        amount: int,
        units: int,
        default_plan: Plan,
        *,
        sizing: Sizing,
        left: int | None = None,
        extra: tuple[Limit, ...] = (),
    ) -> LipikaError | None:
        """The typed error of a database refusal "<code>:<detail>" (None: not a rule's).
        `left` is what the refused credits counter still had, when the caller read it."""
        code, _, detail = refusal.partition(":")
        if code == NOT_IN_PLAN:
            plan = self.plans.get(detail) or default_plan
            return not_in_plan(plan, price)
        limit = self.refused_limit(refusal, price, default_plan, extra)
        if limit is not None:
            needed = _amount(limit, amount, units) or 0
            if limit.scope == "key":
                return key_budget(limit.cap, needed, left, sizing)
            if limit.kind == "credits":
                return daily_cap(limit.cap, needed, left, sizing)
            return limit.refusal(limit.cap, needed, price.name)
        if code == MEMBER_CAP:
            return member_cap(int(detail), amount, left, sizing)
        return None


def _amount(limit: Limit, amount: int, units: int) -> int | None:
    """What one admission adds to a limit's counter (None: the limit does not count it)."""
    if limit.kind == "requests":
        return 1
    if limit.kind == "units":
        return units if units > 0 else None
    return amount


def counter_delta_on_release(kind: str, stored: int, hold_amount: int) -> int:
    """What a release takes back from a counter the hold bumped (the same rule as the SQL)."""
    if kind == "requests":
        return -1
    if kind == "credits":
        return -hold_amount  # the hold's current amount: an extension bumped it too
    return -stored


def not_in_plan(plan: Plan, price: Price) -> LipikaError:
    if price.kind == "model":
        return ModelNotInPlan(
            f"the {plan.label} plan does not include {price.name}", model=price.name, plan=plan.name
        )
    return NotInPlan(
        f"the {plan.label} plan does not include {price.name} ({price.kind})",
        entry=price.name,
        kind=price.kind,
        plan=plan.name,
    )


def _request_limit(limit: int, needed: int, what: str) -> LipikaError:
    return DailyRequestLimitReached(
        f"daily limit of {limit} requests to {what} reached", limit=limit, model=what
    )


def _unit_limit(limit: int, needed: int, what: str) -> LipikaError:
    return DailyUnitLimitReached(
        f"daily limit of {limit} units of {what} reached ({needed} more asked for)",
        limit=limit,
        needed=needed,
        entry=what,
    )


@dataclass(frozen=True, slots=True)
class Sizing:
    """Why a hold is as large as it is, and what the caller can do about it, for refusals that
    name the real cause and the fix."""

    output_allowance: int | None = None  # the output tokens the hold is sized for

    def holds(self, needed: int) -> str:
        why = (
            f" (its output allowance of {self.output_allowance} tokens)"
            if self.output_allowance
            else ""
        )
        return f"this request holds up to {format_credits(needed)} credits{why}"

    def fix(self, otherwise: str) -> str:
        return "send a smaller max_tokens" if self.output_allowance else otherwise


def insufficient(needed: int, available: int, sizing: Sizing) -> InsufficientCredits:
    return InsufficientCredits(
        needed,
        available,
        f"{sizing.holds(needed)}; {format_credits(available)} are available; "
        f"{sizing.fix('add credits')}",
    )


def _key_budget(cap: int, needed: int, what: str) -> LipikaError:
    return key_budget(cap, needed)


def key_budget(
    cap: int, needed: int, left: int | None = None, sizing: Sizing = Sizing()
) -> LipikaError:
    room = f"has {format_credits(max(0, left))} left" if left is not None else "is spent"
    return KeyBudgetExhausted(
        f"{sizing.holds(needed)}; this API key's budget of {format_credits(cap)} credits "
        f"{room}; {sizing.fix('use another key or raise its budget')}",
        budget=cap,
        needed=needed,
    )


def _daily_cap(cap: int, needed: int, what: str) -> LipikaError:
    return daily_cap(cap, needed)


def daily_cap(
    cap: int, needed: int, left: int | None = None, sizing: Sizing = Sizing()
) -> LipikaError:
    room = f"has {format_credits(left)} left today" if left is not None else "is reached"
    return DailyCreditCapReached(
        f"{sizing.holds(needed)}; the workspace's daily credit cap of {format_credits(cap)} "
        f"{room}; {sizing.fix('try again tomorrow')}",
        cap=cap,
        needed=needed,
    )


def member_cap(
    cap: int, needed: int, left: int | None = None, sizing: Sizing = Sizing()
) -> LipikaError:
    room = f"has {format_credits(left)} left" if left is not None else "is reached"
    return MemberMonthlyCapReached(
        f"{sizing.holds(needed)}; your monthly credit cap in this workspace "
        f"({format_credits(cap)}) {room}; {sizing.fix('ask an admin to raise it')}",
        cap=cap,
        needed=needed,
    )


def credit_counter_caps(
    counters: Sequence[Sequence[Any]], plan: Plan, member_cap_value: int | None
) -> dict[str, int | None]:
    """The caps of a hold's credit counters, for an extension (refused like an admission)."""
    caps: dict[str, int | None] = {}
    for key, kind, *_ in counters:
        if kind != "credits":
            continue
        if key.startswith(f"{KEY_SPEND}:"):
            caps[key] = None  # grows with the hold; a key's budget is checked at admission only
        else:
            caps[key] = plan.daily_credit_cap if key.startswith("wsday:") else member_cap_value
    return caps
