"""The price book and plan catalogue are data files validated at start; money is exact integers."""

from __future__ import annotations

import copy
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lipika.billing import pricebook as pricebook_module
from lipika.billing.plans import DEFAULT_PATH as PLANS_PATH
from lipika.billing.plans import PlanCatalogue, PlanCatalogueError
from lipika.billing.pricebook import DEFAULT_PATH as PRICEBOOK_PATH
from lipika.billing.pricebook import PriceBook, PriceBookError, cost_of
from lipika.kit.money import MAX_AMOUNT, MICRO, format_credits, to_micro

BIGINT = 2**63 - 1


def model(**overrides) -> dict:
    spec = {
        "provider": "demo",
        "context_window": 1000,
        "max_output_tokens": 100,
        "input_per_mtok": 1,
        "output_per_mtok": 2,
    }
    spec.update(overrides)
    return spec


def book(**models) -> dict:
    return {"version": "t.1", "models": models or {"m": model()}}


# -- price book --------------------------------------------------------------------------------


def test_a_minimal_price_book_parses_to_micro_credit_rates() -> None:
    parsed = PriceBook.parse(book(m=model(input_per_mtok=1.5, output_per_mtok="2.25")))
    assert parsed.version == "t.1"
    price = parsed.get("m")
    assert price is not None and price.kind == "model" and price.provider == "demo"
    # cached input defaults to the input price
    assert dict(price.rates) == {
        "input_tokens": 1_500_000,
        "output_tokens": 2_250_000,
        "cached_input_tokens": 1_500_000,
    }
    assert price.context_window == 1000 and price.max_output_tokens == 100
    assert [p.name for p in parsed.models] == ["m"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"models": {"m": model()}}, "version"),
        ({"version": "", "models": {"m": model()}}, "version"),
        ({"version": 2026, "models": {"m": model()}}, "version"),
        ({"version": "t.1"}, "prices nothing"),
    ],
)
def test_the_price_book_needs_a_version_and_a_price(data: dict, message: str) -> None:
    with pytest.raises(PriceBookError, match=message):
        PriceBook.parse(data)


def test_unknown_model_fields_are_refused() -> None:
    with pytest.raises(PriceBookError, match=r"model 'm': unknown fields \['input_per_token'\]"):
        PriceBook.parse(book(m=model(input_per_token=1)))


def test_unknown_tool_price_fields_are_refused() -> None:
    data = {"version": "t.1", "tools": {"t": {"kind": "image", "per_imag": 4}}}
    with pytest.raises(PriceBookError, match="tool 't': unknown price field 'per_imag'"):
        PriceBook.parse(data)


@pytest.mark.parametrize(
    "missing",
    ["input_per_mtok", "output_per_mtok", "provider", "context_window", "max_output_tokens"],
)
def test_missing_model_fields_are_refused(missing: str) -> None:
    spec = model()
    del spec[missing]
    with pytest.raises(PriceBookError, match=rf"model 'm': missing \['{missing}'\]"):
        PriceBook.parse(book(m=spec))


@pytest.mark.parametrize("field", ["input_per_mtok", "output_per_mtok", "cached_input_per_mtok"])
@pytest.mark.parametrize("value", [-1, -0.000001, "-3"])
def test_negative_prices_are_refused(field: str, value) -> None:
    with pytest.raises(PriceBookError, match="negative price"):
        PriceBook.parse(book(m=model(**{field: value})))


def test_negative_tool_prices_are_refused() -> None:
    with pytest.raises(PriceBookError, match="negative price"):
        PriceBook.parse({"version": "t.1", "tools": {"t": {"kind": "call", "per_call": -0.01}}})


@pytest.mark.parametrize("value", [0.0000001, "1.0000001", 12.3456789])
def test_prices_finer_than_a_micro_credit_are_refused(value) -> None:
    with pytest.raises(PriceBookError, match="finer than one micro-credit"):
        PriceBook.parse(book(m=model(input_per_mtok=value)))


@pytest.mark.parametrize("value", [True, None, [1], "abc", float("inf"), float("nan")])
def test_prices_that_are_not_finite_numbers_are_refused(value) -> None:
    with pytest.raises(PriceBookError):
        PriceBook.parse(book(m=model(output_per_mtok=value)))


@pytest.mark.parametrize("value", [0, -5, 1.5, True, "100"])
def test_context_window_must_be_a_positive_integer(value) -> None:
    with pytest.raises(PriceBookError, match="context_window: must be a positive integer"):
        PriceBook.parse(book(m=model(context_window=value)))


def test_a_name_priced_as_model_and_tool_is_refused() -> None:
    data = {
        "version": "t.1",
        "models": {"x": model()},
        "tools": {"x": {"kind": "call", "per_call": 1}},
    }
    with pytest.raises(PriceBookError, match="'x' is priced twice"):
        PriceBook.parse(data)


def test_tool_prices_per_task_mode() -> None:
    data = {
        "version": "t.1",
        "tools": {"r": {"kind": "research", "per_task": {"fast": 10, "heavy": 0.5}}},
    }
    price = PriceBook.parse(data).get("r")
    assert price is not None and price.kind == "research"
    assert dict(price.rates) == {"tasks.fast": 10_000_000, "tasks.heavy": 500_000}
    assert price.cost({"tasks.fast": 2, "tasks.heavy": 3}) == 21_500_000


def test_cost_of_rounds_each_line_up_to_a_whole_micro_credit() -> None:
    # 12.5 credits per million tokens = 12.5 micro-credits per token
    rates = {"input_tokens": 12_500_000, "output_tokens": 1_000_000, "cached_input_tokens": 1}
    assert cost_of(rates, {"input_tokens": 1}) == 13
    assert cost_of(rates, {"input_tokens": 2}) == 25
    assert cost_of(rates, {"input_tokens": 3}) == 38
    # per line, not on the total: 0.000001 + 0.000001 micro would round to 1 once, but is 2 here
    assert cost_of(rates, {"cached_input_tokens": 1, "input_tokens": 0}) == 1
    assert (
        cost_of({"input_tokens": 1, "output_tokens": 1}, {"input_tokens": 1, "output_tokens": 1})
        == 2
    )
    assert cost_of(rates, {"input_tokens": 1_000_000, "output_tokens": 7}) == 12_500_000 + 7
    # non-token units are per unit, not per million
    assert cost_of({"images": 4_000_000}, {"images": 3}) == 12_000_000
    assert cost_of(rates, {}) == 0


@given(
    rate=st.integers(min_value=0, max_value=10**10),
    quantity=st.integers(min_value=0, max_value=10**7),
)
def test_cost_of_is_the_exact_ceiling_of_each_line(rate: int, quantity: int) -> None:
    exact = Decimal(rate) * quantity / pricebook_module.TOKEN_BLOCK
    charged = cost_of({"output_tokens": rate}, {"output_tokens": quantity})
    assert charged - 1 < exact <= charged


def test_cost_of_refuses_units_it_has_no_price_for() -> None:
    rates = {"input_tokens": 1, "output_tokens": 1}
    with pytest.raises(ValueError, match="no price for unit 'images'"):
        cost_of(rates, {"input_tokens": 5, "images": 1})
    # a zero quantity of an unpriced unit costs nothing and is not an error
    assert cost_of(rates, {"input_tokens": 1_000_000, "images": 0}) == 1
    with pytest.raises(ValueError, match="negative usage"):
        cost_of(rates, {"input_tokens": -1})


# -- plan catalogue ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_book() -> PriceBook:
    return PriceBook.load()


def test_a_plan_naming_an_unknown_model_is_refused(shipped_book: PriceBook) -> None:
    data = {"plans": {"free": {"models": ["demo", "gpt-7"]}}}
    with pytest.raises(
        PlanCatalogueError, match=r"plan 'free' names models the price book lacks: \['gpt-7'\]"
    ):
        PlanCatalogue.parse(data, shipped_book)


def test_a_plan_naming_a_tool_as_a_model_is_refused(shipped_book: PriceBook) -> None:
    data = {"plans": {"free": {"models": ["image.gpt-image-1"]}}}
    with pytest.raises(PlanCatalogueError, match="image.gpt-image-1"):
        PlanCatalogue.parse(data, shipped_book)


def test_the_catalogue_needs_a_free_plan(shipped_book: PriceBook) -> None:
    with pytest.raises(PlanCatalogueError, match="needs a 'free' plan"):
        PlanCatalogue.parse({"plans": {"pro": {"models": ["*"]}}}, shipped_book)
    with pytest.raises(PlanCatalogueError, match="needs a 'free' plan"):
        PlanCatalogue.parse({}, shipped_book)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"monthly_credits": -1}, "negative amounts"),
        ({"daily_credit_cap": -0.5}, "negative amounts"),
        ({"monthly_credits": 0.0000001}, "finer than one micro-credit"),
        ({"daily_requests": {"*": -1}}, "must be a whole number"),
        ({"daily_requests": {"demo": 1.5}}, "must be a whole number"),
        ({"daily_requests": {"demo": True}}, "must be a whole number"),
    ],
)
def test_plan_amounts_and_limits_are_validated(
    shipped_book: PriceBook, spec: dict, message: str
) -> None:
    with pytest.raises(PlanCatalogueError, match=message):
        PlanCatalogue.parse({"plans": {"free": {"models": ["demo"], **spec}}}, shipped_book)


def test_plan_limits_parse_to_micro_credits(shipped_book: PriceBook) -> None:
    data = {
        "plans": {
            "free": {
                "models": ["demo"],
                "monthly_credits": 1.5,
                "daily_requests": {"*": 3, "demo": 7},
            },
            "all": {"label": "All", "models": ["*"], "daily_credit_cap": 2},
        }
    }
    catalogue = PlanCatalogue.parse(data, shipped_book)
    free, every = catalogue.get("free"), catalogue.get("all")
    assert free is not None and every is not None
    assert (free.monthly_credits, free.daily_credit_cap, free.label) == (1_500_000, None, "free")
    assert free.allows("demo") and not free.allows("gpt-5")
    assert free.daily_request_limit("demo") == 7
    assert free.daily_request_limit("gpt-5") == 3
    assert (every.models, every.daily_credit_cap, every.monthly_credits) == (None, 2_000_000, 0)
    assert every.allows("grok-4.5") and every.daily_request_limit("grok-4.5") is None


def test_the_shipped_files_load_and_every_plan_names_priced_models() -> None:
    shipped = PriceBook.load(PRICEBOOK_PATH)
    raw_book = tomllib.loads(Path(PRICEBOOK_PATH).read_text())
    assert shipped.version == raw_book["version"]
    assert {p.name for p in shipped.models} == set(raw_book["models"])
    demo = shipped.get("demo")
    assert demo is not None and demo.provider == "demo"
    assert dict(demo.rates) == {
        "input_tokens": 100_000_000,
        "output_tokens": 500_000_000,
        "cached_input_tokens": 10_000_000,
    }
    gpt5 = shipped.get("gpt-5")
    assert gpt5 is not None and gpt5.rates["cached_input_tokens"] == 12_500_000

    catalogue = PlanCatalogue.load(shipped, PLANS_PATH)
    raw_plans = tomllib.loads(Path(PLANS_PATH).read_text())["plans"]
    assert set(catalogue.plans) == set(raw_plans) == {"free", "pro", "team"}
    for name, plan in catalogue.plans.items():
        names = shipped.prices if plan.models is None else plan.models
        for model_name in names:
            price = shipped.get(model_name)
            assert price is not None, (name, model_name)
        for model_name in plan.daily_requests:
            assert model_name == "*" or model_name in shipped.prices, (name, model_name)
    free = catalogue.get("free")
    assert free is not None
    assert (free.monthly_credits, free.daily_credit_cap) == (100 * MICRO, 50 * MICRO)
    assert (
        free.daily_request_limit("claude-haiku-4-5") == 50
        and free.daily_request_limit("demo") == 200
    )
    assert "demo" in free.models and not free.allows("gpt-5")
    team = catalogue.get("team")
    assert (
        team is not None
        and team.daily_credit_cap is None
        and team.monthly_credits == 10_000 * MICRO
    )


def test_the_plan_catalogue_is_checked_against_the_price_book_it_is_loaded_with(
    tmp_path: Path,
) -> None:
    raw = tomllib.loads(Path(PRICEBOOK_PATH).read_text())
    smaller = copy.deepcopy(raw)
    del smaller["models"]["claude-haiku-4-5"]
    with pytest.raises(PlanCatalogueError, match="claude-haiku-4-5"):
        PlanCatalogue.load(PriceBook.parse(smaller), PLANS_PATH)
    missing = tmp_path / "nope.toml"
    with pytest.raises(PlanCatalogueError, match="cannot read plan catalogue"):
        PlanCatalogue.load(PriceBook.parse(raw), missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("version = ")
    with pytest.raises(PriceBookError, match="cannot read price book"):
        PriceBook.load(broken)


# -- money -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credits, micro",
    [
        (0, 0),
        (1, 1_000_000),
        ("2.5", 2_500_000),
        (2.5, 2_500_000),
        (7.5, 7_500_000),
        (0.1, 100_000),
        ("0.000001", 1),
        ("-3.25", -3_250_000),
        (Decimal("12.500000"), 12_500_000),
        ("1E+3", 1_000_000_000),
    ],
)
def test_to_micro_is_exact(credits, micro: int) -> None:
    assert to_micro(credits) == micro


@pytest.mark.parametrize("credits", ["0.0000001", 1e-7, "abc", "NaN", "Infinity", float("inf")])
def test_to_micro_refuses_what_is_not_a_whole_micro_credit(credits) -> None:
    with pytest.raises(ValueError):
        to_micro(credits)


@pytest.mark.parametrize(
    "micro, text",
    [
        (0, "0"),
        (1, "0.000001"),
        (1_500_000, "1.5"),
        (-2_500_000, "-2.5"),
        (-1, "-0.000001"),
        (100_000_000, "100"),
    ],
)
def test_format_credits(micro: int, text: str) -> None:
    assert format_credits(micro) == text


@given(st.integers(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT))
def test_micro_credits_round_trip_through_their_credit_string(micro: int) -> None:
    text = format_credits(micro)
    assert to_micro(text) == micro
    assert to_micro(Decimal(text)) == micro


@given(
    st.decimals(
        min_value=-(10**9), max_value=10**9, places=6, allow_nan=False, allow_infinity=False
    )
)
def test_credit_amounts_with_at_most_six_places_round_trip(credits: Decimal) -> None:
    micro = to_micro(credits)
    assert Decimal(micro) == credits * MICRO
    assert Decimal(format_credits(micro)) == credits


def test_one_amount_moves_at_most_a_billion_credits() -> None:
    assert MAX_AMOUNT == 10**15 < BIGINT // 1000
    assert to_micro(10**9) == to_micro("1000000000.000000") == MAX_AMOUNT
    assert to_micro("-1000000000") == -MAX_AMOUNT
    for too_much in ("1000000000.000001", "-1000000000.000001", 10**12, "1e30"):
        with pytest.raises(ValueError, match="more than one amount may move"):
            to_micro(too_much)
