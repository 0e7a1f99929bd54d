"""The catalogue: every price-book entry (SKU) of every kind, with its units and prices, and
what the caller's plan says of it. Chat models are also listed by `GET /v1/models`, in
OpenAI's shape; this is the one list that covers tools, images, video, research and speech."""

from __future__ import annotations

from lipika.billing.plans import Plan
from lipika.billing.pricebook import TOKEN_BLOCK, TOKEN_UNITS, PriceBook
from lipika.billing.schemas import SkuOut


def catalogue_entries(price_book: PriceBook, plan: Plan) -> list[SkuOut]:
    """Models first, then the other kinds, each group in the price book's order."""
    prices = sorted(price_book.prices.values(), key=lambda p: p.kind != "model")
    return [
        SkuOut(
            id=price.name,
            kind=price.kind,
            label=price.label,
            prices=dict(price.rates),
            per={unit: TOKEN_BLOCK if unit in TOKEN_UNITS else 1 for unit in price.rates},
            allowed=plan.allows_price(price),
            daily_requests=plan.request_limit_for(price),
            daily_units=plan.unit_limit_for(price),
        )
        for price in prices
    ]
