"""The plan catalogue: which models a plan may use, its limits and its monthly credits."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipika.billing.pricebook import PriceBook
from lipika.kit.money import to_micro

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "plans.toml"
DEFAULT_PLAN = "free"


class PlanCatalogueError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    label: str
    models: frozenset[str] | None  # None: every model in the price book
    monthly_credits: int = 0  # micro-credits
    daily_credit_cap: int | None = None  # micro-credits, whole workspace
    daily_requests: Mapping[str, int] = field(default_factory=dict)  # per member and model

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def daily_request_limit(self, model: str) -> int | None:
        return self.daily_requests.get(model, self.daily_requests.get("*"))


@dataclass(frozen=True)
class PlanCatalogue:
    plans: Mapping[str, Plan]

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
        return cls(plans)


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
    requests = dict(spec.get("daily_requests", {}))
    for model, limit in requests.items():
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise PlanCatalogueError(
                f"plan {name!r}: daily_requests[{model!r}] must be a whole number"
            )
    try:
        monthly = to_micro(spec.get("monthly_credits", 0))
        cap = to_micro(spec["daily_credit_cap"]) if "daily_credit_cap" in spec else None
    except ValueError as exc:
        raise PlanCatalogueError(f"plan {name!r}: {exc}") from None
    if monthly < 0 or (cap is not None and cap < 0):
        raise PlanCatalogueError(f"plan {name!r}: negative amounts are not allowed")
    return Plan(
        name=name,
        label=str(spec.get("label", name)),
        models=models,
        monthly_credits=monthly,
        daily_credit_cap=cap,
        daily_requests=requests,
    )
