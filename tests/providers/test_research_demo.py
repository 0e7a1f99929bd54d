"""The demo research provider: a deterministic task whose schedule is in its id, so its
status reads the same from any process and after a restart."""

from __future__ import annotations

import pytest

from lipika.providers.errors import ProviderRejected
from lipika.providers.research import DEMO_COST_USD, DEMO_STEPS, DemoResearch, ResearchTask


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_demo_task_moves_step_by_step_to_its_report() -> None:
    clock = Clock()
    demo = DemoResearch(step_seconds=10, clock=clock)
    created = await demo.create(ResearchTask("Why is the sky blue?", mode="fast"))
    first = await demo.status(created.id)
    assert first is not None and first.state == "queued" and first.total_steps == DEMO_STEPS["fast"]
    clock.now += 25
    halfway = await demo.status(created.id)
    assert halfway is not None and (halfway.state, halfway.step) == ("running", 2)
    assert len(halfway.sources) == 2 and halfway.cost_usd is None
    assert await demo.status(created.id, etag=halfway.etag) is None  # unchanged
    clock.now += 1000
    done = await DemoResearch(step_seconds=1, clock=clock).status(created.id)  # another process
    assert done is not None and done.state == "succeeded" and done.ended
    assert done.cost_usd == DEMO_COST_USD and "Demo report" in done.output


async def test_a_cancelled_demo_task_stops_where_it_was_and_costs_nothing() -> None:
    clock = Clock()
    demo = DemoResearch(step_seconds=10, clock=clock)
    created = await demo.create(ResearchTask("q", mode="standard"))
    clock.now += 15
    await demo.cancel(created.id)
    clock.now += 1000
    status = await demo.status(created.id)
    assert status is not None and (status.state, status.step, status.cost_usd) == (
        "cancelled",
        1,
        None,
    )


async def test_unknown_modes_and_ids_are_refused() -> None:
    demo = DemoResearch()
    with pytest.raises(ProviderRejected):
        await demo.create(ResearchTask("q", mode="turbo"))
    for task_id in ("nope", "demo-turbo-1-1-ab-cd", "demo-fast-x-1-ab-cd"):
        with pytest.raises(ProviderRejected):
            await demo.status(task_id)
