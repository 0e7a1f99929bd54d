"""Plans gate price-book entries of every kind (by entry or by kind), daily limits apply per
entry in requests and in units, and the catalogue lists every SKU with what the plan says."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from lipika.billing.errors import DailyUnitLimitReached, NotInPlan
from lipika.billing.meter import Ticket
from lipika.billing.plans import PlanCatalogue, PlanCatalogueError
from lipika.billing.policy import Outcome
from lipika.billing.pricebook import PriceBook
from tests.fixtures.ledger import Books

PRICES = PriceBook.load()
VIDEO = "video.veo-3"  # 40 credits a second


def test_a_plan_allows_and_refuses_by_entry_or_by_kind() -> None:
    catalogue = PlanCatalogue.parse(
        {
            "plans": {
                "free": {
                    "models": ["demo"],
                    "refuse": ["video", "research", "agent.clock"],
                    "allow": ["video.veo-3-fast"],
                },
            }
        },
        PRICES,
    )
    free = catalogue.get("free")
    assert free is not None
    allowed = {name for name, price in PRICES.prices.items() if free.allows_price(price)}
    assert allowed == {
        "demo",
        "video.veo-3-fast",  # an entry beats its kind
        "image.gpt-image-1",
        "image.imagen-4",
        "image.demo",
        "image.gpt-image-2",
        "image.gemini-2.5-flash-image",
        "image.gemini-3.1-flash-image",
        "image.gemini-3-pro-image",
        "image.grok-imagine-image",
        "stt.realtime",
        "stt.demo",
        "stt.nova-3",
        "stt.gpt-live-transcribe",
        "stt.gpt-transcribe",
        "agent.calculator",
        "agent.generate_image",
        "agent.generate_video",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"refuse": ["hologram"]}, "refuse names entries or kinds the price book lacks"),
        ({"allow": ["video.veo-9"]}, "allow names entries or kinds the price book lacks"),
        ({"daily_units": {"video.veo-9": 10}}, "names no price-book entry"),
        ({"daily_units": {VIDEO: -1}}, "must be a whole number"),
    ],
)
def test_gates_and_unit_limits_are_validated(spec: dict, message: str) -> None:
    with pytest.raises(PlanCatalogueError, match=message):
        PlanCatalogue.parse({"plans": {"free": {"models": ["demo"], **spec}}}, PRICES)


async def test_a_refused_kind_is_refused_before_any_hold(books: Books, extra_plans) -> None:
    extra_plans({"no-video": {"models": ["*"], "refuse": ["video"], "monthly_credits": 100}})
    workspace_id = await books.new_wallet("no-video")
    with pytest.raises(NotInPlan) as refused:
        await books.meter.admit(
            workspace_id,
            uuid.uuid4(),
            operation="job.video",
            price=VIDEO,
            max_usage={"video_seconds": 8},
        )
    assert refused.value.code == "sku_not_in_plan"
    assert refused.value.details == {"entry": VIDEO, "kind": "video", "plan": "no-video"}
    assert await books.holds(workspace_id) == []
    assert (await books.state(workspace_id)).held == 0


async def test_a_daily_unit_limit_lets_exactly_its_units_in_under_concurrent_admission(
    books: Books, extra_plans
) -> None:
    """100 concurrent 3-second video jobs against a limit of 21 seconds a day: exactly 7 get in;
    a released one gives its seconds back."""
    extra_plans({"video-21": {"models": ["*"], "daily_units": {VIDEO: 21}}})
    workspace_id = await books.new_wallet("video-21")
    await books.set_available(workspace_id, 10**12)
    user_id = uuid.uuid4()
    max_usage = {"video_seconds": 3}

    def admit() -> asyncio.Future:
        return books.meter.admit(
            workspace_id, user_id, operation="job.video", price=VIDEO, max_usage=max_usage
        )

    results = await asyncio.gather(*(admit() for _ in range(100)), return_exceptions=True)
    tickets = [r for r in results if isinstance(r, Ticket)]
    refused = [r for r in results if isinstance(r, DailyUnitLimitReached)]
    assert (len(tickets), len(refused)) == (7, 93), [
        r for r in results if not isinstance(r, Ticket | DailyUnitLimitReached)
    ][:3]
    assert refused[0].code == "daily_unit_limit"
    counters = await books.counters(f"units:{workspace_id}:{user_id}:{VIDEO}:")
    assert list(counters.values()) == [21]
    amount = PRICES.get(VIDEO).cost(max_usage)  # type: ignore[union-attr]
    assert (await books.state(workspace_id)).held == 7 * amount

    await books.meter.release(tickets[0].hold_id, Outcome.JOB_CANCELLED)
    assert list((await books.counters(f"units:{workspace_id}:")).values()) == [18]
    again = await asyncio.gather(*(admit() for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, Ticket) for r in again) == 1
    await books.assert_balanced()


async def test_the_catalogue_lists_every_sku_with_its_units_prices_and_plan(
    client: httpx.AsyncClient, signup
) -> None:
    account = await signup()
    response = await client.get("/v1/billing/catalogue", headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["price_version"], body["plan"]) == (PRICES.version, "free")
    entries = {entry["id"]: entry for entry in body["data"]}
    assert set(entries) == set(PRICES.prices)
    video = entries[VIDEO]
    assert video["kind"] == "video"
    assert video["prices"] == {"video_seconds": 40_000_000} and video["per"] == {"video_seconds": 1}
    demo = entries["demo"]
    assert demo["per"]["input_tokens"] == 1_000_000 and demo["allowed"] is True
    assert entries["gpt-5"]["allowed"] is False  # not on the free plan
    assert entries["claude-haiku-4-5"]["daily_requests"] == 50
    assert entries["agent.calculator"]["allowed"] is True

    stranger = await signup("stranger")
    foreign = await client.get(
        "/v1/billing/catalogue",
        headers={**account.headers, "X-Workspace-Id": stranger.personal_workspace_id},
    )
    assert foreign.status_code == 404
    assert (await client.get("/v1/billing/catalogue")).status_code == 401
