"""What is sold is validated with the plan catalogue: prices to the paisa, per period, a flat
price or a seat price, packs with credits and a price."""

from __future__ import annotations

import pytest

from lipika.billing.plans import PlanCatalogue, PlanCatalogueError
from lipika.billing.pricebook import PriceBook

BOOK = PriceBook.load()
FREE = {"models": ["demo"]}


def _parse(plans: dict, packs: dict | None = None) -> PlanCatalogue:
    return PlanCatalogue.parse({"plans": {"free": FREE, **plans}, "packs": packs or {}}, BOOK)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"price": {"week": 10}}, "periods are month and year"),
        ({"price": {"month": "10.005"}}, "to the paisa"),
        ({"price": {"month": -5}}, "must be positive"),
        ({"price": {"month": True}}, "not an amount"),
        ({"price": {"month": "ten"}}, "not an amount"),
        ({"price": {"month": 10}, "seat_price": {"month": 5}}, "not both"),
        ({"credits_per_seat": 10}, "needs a seat_price"),
        ({"price": {"month": 10}, "rank": "high"}, "rank"),
    ],
)
def test_bad_prices_are_refused_naming_the_plan(spec: dict, message: str) -> None:
    with pytest.raises(PlanCatalogueError, match=message) as raised:
        _parse({"pro": {"models": ["*"], **spec}})
    assert "'pro'" in str(raised.value)


def test_the_free_plan_is_not_sold() -> None:
    with pytest.raises(PlanCatalogueError, match="cannot have a price"):
        PlanCatalogue.parse({"plans": {"free": {**FREE, "price": {"month": 10}}}}, BOOK)


@pytest.mark.parametrize("pack", [{"price": 10}, {"credits": 0, "price": 10}, {"credits": 5}, {"credits": 5, "price": "1.001"}])
def test_bad_packs_are_refused(pack: dict) -> None:
    with pytest.raises(PlanCatalogueError, match="pack 'p'"):
        _parse({}, {"p": pack})


def test_prices_and_credits_per_period() -> None:
    catalogue = _parse(
        {
            "pro": {"models": ["*"], "monthly_credits": 10, "price": {"month": "99.50", "year": 999}},
            "team": {"models": ["*"], "seat_price": {"month": 20}, "credits_per_seat": "2.5"},
        },
        {"p": {"credits": 5, "price": "10.25"}},
    )
    pro, team = catalogue.get("pro"), catalogue.get("team")
    assert (pro.price_for("month"), pro.price_for("year"), pro.credits_for("year")) == (9_950, 99_900, 120_000_000)
    assert (team.price_for("month", 3), team.price_for("year", 3), team.credits_for("month", 3)) == (6_000, None, 7_500_000)
    assert (catalogue.packs["p"].price, catalogue.packs["p"].credits) == (1_025, 5_000_000)
