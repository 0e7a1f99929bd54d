"""The catalogue: every price-book entry (SKU) of every kind, with its units and prices, and
what the caller's plan says of it. Chat models are also listed by `GET /v1/models`, in
OpenAI's shape; this is the one list that covers tools, images, video, research and speech."""

from __future__ import annotations

from typing import Protocol

from lipika.billing.errors import UnknownPrice
from lipika.billing.plans import PERIODS, Plan, PlanCatalogue
from lipika.billing.pricebook import PER_MILLION_UNITS, TOKEN_BLOCK, Price, PriceBook
from lipika.billing.schemas import PackOut, PlanOfferOut, SkuOut
from lipika.errors import LipikaError
from lipika.providers.chat import ChatProvider


class ModelUnavailable(LipikaError):
    """The provider is not configured on this server: no retry will change that."""

    status_code = 503
    code = "model_unavailable"
    type = "api_error"
    should_retry = False


class Providers(Protocol):
    def get(self, name: str) -> ChatProvider | None: ...


def chat_model(
    price_book: PriceBook, providers: Providers, name: str
) -> tuple[Price, ChatProvider]:
    """The one model resolver (chat completions, model cards, agent runs): the model's price
    and the adapter that serves it; 404 if the price book has no such chat model, 503 if its
    provider is not configured on this server."""
    price = price_book.get(name)
    if price is None or price.kind != "model":
        raise UnknownPrice(f"model {name!r} does not exist", price=name)
    provider = providers.get(price.provider or "")
    if provider is None or not provider.available:
        raise ModelUnavailable(f"model {name!r} is not available on this server")
    return price, provider


def catalogue_entries(price_book: PriceBook, plan: Plan) -> list[SkuOut]:
    """Models first, then the other kinds, each group in the price book's order."""
    prices = sorted(price_book.prices.values(), key=lambda p: p.kind != "model")
    return [
        SkuOut(
            id=price.name,
            kind=price.kind,
            label=price.label,
            prices=dict(price.rates),
            per={unit: TOKEN_BLOCK if unit in PER_MILLION_UNITS else 1 for unit in price.rates},
            allowed=plan.allows_price(price),
            daily_requests=plan.request_limit_for(price),
            daily_units=plan.unit_limit_for(price),
        )
        for price in prices
    ]


def plans_on_sale(plans: PlanCatalogue) -> list[PlanOfferOut]:
    """The plans with a price, lowest rank first, for the front end's pricing page."""
    sold = sorted((p for p in plans.plans.values() if p.sold), key=lambda p: p.rank)
    return [
        PlanOfferOut(
            id=plan.name,
            label=plan.label,
            prices=dict(plan.prices),
            seat_prices=dict(plan.seat_prices),
            credits_per_period={
                period: plan.credits_for(period, 1)
                for period in PERIODS
                if plan.price_for(period, 1) is not None
            },
            rank=plan.rank,
        )
        for plan in sold
    ]


def packs_on_sale(plans: PlanCatalogue) -> list[PackOut]:
    return [
        PackOut(id=pack.name, label=pack.label, price=pack.price, credits=pack.credits)
        for pack in plans.packs.values()
    ]
