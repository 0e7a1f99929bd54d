"""The plan catalogue: which price-book entries (SKUs) a plan may use, its limits and its
monthly credits.

A plan gates every kind of entry, not only chat models: `models` lists the chat models it
includes ("*" for all); `allow` and `refuse` name entries or whole kinds ("video", "research");
an entry's own name decides before its kind. Entries of other kinds than "model" are allowed
unless refused. Daily limits apply per member and entry: `daily_requests` (the "*" default
applies to chat models only) and `daily_units`, in the entry's own unit (video or audio
seconds, images, calls). `rate_limits` bound requests and tokens per minute, per workspace and
per API key (see `RateLimits`)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lipika.billing.pricebook import Price, PriceBook
from lipika.kit.money import to_micro

PERIODS = {"month": 1, "year": 12}  # months in each billing period
CURRENCY = "BDT"

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "plans.toml"
DEFAULT_PLAN = "free"


class PlanCatalogueError(ValueError):
    pass


RATE_LIMIT_FIELDS = (
    "workspace_requests_per_minute",
    "workspace_tokens_per_minute",
    "key_requests_per_minute",
    "key_tokens_per_minute",
)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests and model tokens per minute (None: no limit), for the whole workspace and for
    each of its API keys. Tokens are counted at admission as the most the request may use
    (input estimate and output allowance), then corrected to what it used."""

    workspace_requests_per_minute: int | None = None
    workspace_tokens_per_minute: int | None = None
    key_requests_per_minute: int | None = None
    key_tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    label: str
    models: frozenset[str] | None  # None: every model in the price book
    monthly_credits: int = 0  # micro-credits
    daily_credit_cap: int | None = None  # micro-credits, whole workspace
    daily_requests: Mapping[str, int] = field(default_factory=dict)  # per member and entry
    allow: frozenset[str] = frozenset()  # entries or kinds allowed (an entry beats its kind)
    refuse: frozenset[str] = frozenset()  # entries or kinds refused
    daily_units: Mapping[str, int] = field(default_factory=dict)  # per member and entry
    rate_limits: RateLimits = RateLimits()
    prices: Mapping[str, int] = field(default_factory=dict)  # paisa per period, flat
    seat_prices: Mapping[str, int] = field(default_factory=dict)  # paisa per seat and period
    credits_per_seat: int = 0  # micro-credits per seat and month
    rank: int = 0  # upgrades go up the ranks, downgrades down

    @property
    def sold(self) -> bool:
        return bool(self.prices or self.seat_prices)

    @property
    def per_seat(self) -> bool:
        return bool(self.seat_prices)

    def price_for(self, period: str, seats: int = 1) -> int | None:
        """What one period costs, in paisa (None: not sold for that period)."""
        if self.per_seat:
            each = self.seat_prices.get(period)
            return None if each is None else each * seats
        return self.prices.get(period)

    def credits_for(self, period: str, seats: int = 1) -> int:
        """The credits one paid period grants, in micro-credits."""
        months = PERIODS[period]
        if self.per_seat:
            return self.credits_per_seat * seats * months
        return self.monthly_credits * months

    def allows(self, name: str, kind: str = "model") -> bool:
        """Whether the plan includes the entry `name` of kind `kind`."""
        if name in self.refuse:
            return False
        if name in self.allow:
            return True
        if kind in self.refuse:
            return False
        if kind == "model":
            return self.models is None or name in self.models
        return True

    def allows_price(self, price: Price) -> bool:
        return self.allows(price.name, price.kind)

    def daily_request_limit(self, model: str) -> int | None:
        return self.daily_requests.get(model, self.daily_requests.get("*"))

    def request_limit_for(self, price: Price) -> int | None:
        """Daily requests per member for an entry; the "*" default is for chat models."""
        if price.kind == "model":
            return self.daily_request_limit(price.name)
        return self.daily_requests.get(price.name)

    def unit_limit_for(self, price: Price) -> int | None:
        """Daily units per member for an entry (its own unit: seconds, images, calls). `rate_limits` bound requests and tokens per minute, per workspace and
per API key (see `RateLimits`)."""
        return self.daily_units.get(price.name)


@dataclass(frozen=True, slots=True)
class Pack:
    """One-off credits for a price."""

    name: str
    label: str
    credits: int  # micro-credits
    price: int  # paisa


@dataclass(frozen=True)
class PlanCatalogue:
    plans: Mapping[str, Plan]
    packs: Mapping[str, Pack] = field(default_factory=dict)

    def get(self, name: str) -> Plan | None:
        return self.plans.get(name)

    @classmethod
    def load(cls, price_book: PriceBook, path: Path | None = None) -> PlanCatalogue:
        path = path or DEFAULT_PATH
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PlanCatalogueError(f"cannot read plan catalogue {path}: {exc}") from exc
        return cls.parse(data, price_book)

    @classmethod
    def parse(cls, data: Mapping[str, Any], price_book: PriceBook) -> PlanCatalogue:
        plans = {
            name: _plan(name, spec, price_book) for name, spec in data.get("plans", {}).items()
        }
        if DEFAULT_PLAN not in plans:
            raise PlanCatalogueError(f"the catalogue needs a {DEFAULT_PLAN!r} plan")
        if plans[DEFAULT_PLAN].sold:
            raise PlanCatalogueError(f"the {DEFAULT_PLAN!r} plan cannot have a price")
        packs = {name: _pack(name, spec) for name, spec in data.get("packs", {}).items()}
        return cls(plans, packs)


def _plan(name: str, spec: Mapping[str, Any], price_book: PriceBook) -> Plan:
    models_spec = spec.get("models", [])
    if models_spec == ["*"]:
        models = None
    else:
        models = frozenset(models_spec)
        unknown = {m for m in models if (p := price_book.get(m)) is None or p.kind != "model"}
        if unknown:
            raise PlanCatalogueError(
                f"plan {name!r} names models the price book lacks: {sorted(unknown)}"
            )
    requests = _limits(name, "daily_requests", spec, price_book, wildcard=True)
    units = _limits(name, "daily_units", spec, price_book, wildcard=False)
    kinds = {p.kind for p in price_book.prices.values()}
    gates = {}
    for key in ("allow", "refuse"):
        named = frozenset(spec.get(key, []))
        unknown = {n for n in named if price_book.get(n) is None and n not in kinds}
        if unknown:
            raise PlanCatalogueError(
                f"plan {name!r}: {key} names entries or kinds the price book lacks: "
                f"{sorted(unknown)}"
            )
        gates[key] = named
    try:
        monthly = to_micro(spec.get("monthly_credits", 0))
        cap = to_micro(spec["daily_credit_cap"]) if "daily_credit_cap" in spec else None
    except ValueError as exc:
        raise PlanCatalogueError(f"plan {name!r}: {exc}") from None
    if monthly < 0 or (cap is not None and cap < 0):
        raise PlanCatalogueError(f"plan {name!r}: negative amounts are not allowed")
    prices = _period_prices(name, "price", spec)
    seat_prices = _period_prices(name, "seat_price", spec)
    if prices and seat_prices:
        raise PlanCatalogueError(f"plan {name!r}: a price or a seat_price, not both")
    try:
        per_seat = to_micro(spec.get("credits_per_seat", 0))
    except ValueError as exc:
        raise PlanCatalogueError(f"plan {name!r}: {exc}") from None
    if per_seat < 0 or (per_seat and not seat_prices):
        raise PlanCatalogueError(f"plan {name!r}: credits_per_seat needs a seat_price")
    rank = spec.get("rank", 0)
    if not isinstance(rank, int) or isinstance(rank, bool):
        raise PlanCatalogueError(f"plan {name!r}: rank must be a whole number")
    return Plan(
        rate_limits=_rate_limits(name, spec.get("rate_limits", {})),
        name=name,
        label=str(spec.get("label", name)),
        models=models,
        monthly_credits=monthly,
        daily_credit_cap=cap,
        daily_requests=requests,
        allow=gates["allow"],
        refuse=gates["refuse"],
        daily_units=units,
        prices=prices,
        seat_prices=seat_prices,
        credits_per_seat=per_seat,
        rank=rank,
    )


def to_paisa(amount: Any, what: str) -> int:
    """BDT as written in the data file (a number or a decimal string) to whole paisa."""
    try:
        value = Decimal(str(amount)) * 100
    except (InvalidOperation, ValueError):
        raise PlanCatalogueError(f"{what}: {amount!r} is not an amount of BDT") from None
    if value != value.to_integral_value() or value <= 0 or isinstance(amount, bool):
        raise PlanCatalogueError(f"{what}: {amount!r} must be positive, to the paisa")
    return int(value)


def _period_prices(name: str, key: str, spec: Mapping[str, Any]) -> dict[str, int]:
    prices = dict(spec.get(key, {}))
    unknown = set(prices) - set(PERIODS)
    if unknown:
        raise PlanCatalogueError(f"plan {name!r}: {key} periods are month and year, not {unknown}")
    return {period: to_paisa(v, f"plan {name!r} {key}.{period}") for period, v in prices.items()}


def _pack(name: str, spec: Mapping[str, Any]) -> Pack:
    try:
        credits = to_micro(spec["credits"])
    except (KeyError, ValueError) as exc:
        raise PlanCatalogueError(f"pack {name!r}: credits: {exc}") from None
    if credits <= 0 or "price" not in spec:
        raise PlanCatalogueError(f"pack {name!r} needs positive credits and a price")
    return Pack(
        name, str(spec.get("label", name)), credits, to_paisa(spec["price"], f"pack {name!r}")
    )


def _limits(
    name: str, key: str, spec: Mapping[str, Any], price_book: PriceBook, *, wildcard: bool
) -> dict[str, int]:
    limits = dict(spec.get(key, {}))
    for entry, limit in limits.items():
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise PlanCatalogueError(f"plan {name!r}: {key}[{entry!r}] must be a whole number")
        if key == "daily_units" and (entry == "*" or price_book.get(entry) is None):
            raise PlanCatalogueError(f"plan {name!r}: {key} names no price-book entry {entry!r}")
        if not wildcard and entry == "*":
            raise PlanCatalogueError(f"plan {name!r}: {key} takes entries, not '*'")
    return limits


def _rate_limits(name: str, spec: Mapping[str, Any]) -> RateLimits:
    unknown = set(spec) - set(RATE_LIMIT_FIELDS)
    if unknown:
        raise PlanCatalogueError(
            f"plan {name!r}: rate_limits has no {sorted(unknown)}; it takes {RATE_LIMIT_FIELDS}"
        )
    for key, value in spec.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PlanCatalogueError(f"plan {name!r}: rate_limits.{key} must be a whole number > 0")
    return RateLimits(**spec)
