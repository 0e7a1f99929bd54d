"""Deep research jobs: a provider task (Valyu DeepResearch, or the demo) created once, followed
by polling until it ends, its report and sources kept as the job's outputs.

Billing: the hold is the mode's `per_task` (the most a task of that mode can cost); the charge
is the cost the finished task reports, in micro-USD at the entry's `per_provider_usd`, never
above the hold (the meter caps a capture at its hold, and the invariant alarms report it).
A task that fails, is cancelled or ends past its deadline costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from lipika.billing.policy import Outcome
from lipika.billing.pricebook import PriceBook
from lipika.jobs.errors import InvalidJob
from lipika.jobs.kinds.base import (
    Accepted,
    Admission,
    Done,
    Failed,
    JobKind,
    Output,
    Progress,
    Step,
    parse_params,
    tool_price,
)
from lipika.jobs.models import Job
from lipika.providers.research import (
    MAX_QUERY_CHARS,
    ResearchProvider,
    ResearchStatus,
    ResearchTask,
)

COST_UNIT = "provider_usd_micros"


class ResearchParams(BaseModel):
    """A research job's parameters. `mode` picks the price-book entry `research.<mode>`; `demo`
    is the local simulated task."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    mode: Literal["fast", "standard", "heavy", "max", "demo"] = "standard"
    output_formats: list[Literal["markdown", "pdf"]] = Field(
        default_factory=lambda: ["markdown"], min_length=1, max_length=2
    )
    urls: list[HttpUrl] = Field(default_factory=list, max_length=10)


class ResearchKind(JobKind):
    name = "research"

    def __init__(
        self,
        providers: Mapping[str, ResearchProvider],
        *,
        poll_seconds: float = 10.0,
        deadline: timedelta = timedelta(minutes=30),
    ) -> None:
        self.providers = providers
        self.poll_seconds = poll_seconds
        self.deadline = deadline

    def admission(self, params: Mapping[str, Any], price_book: PriceBook) -> Admission:
        parsed = parse_params(ResearchParams, params)
        if not parsed.query.strip():
            raise InvalidJob("params.query: the query is blank", param="params.query")
        price = tool_price(price_book, "research", parsed.mode)
        if "tasks" not in price.rates or COST_UNIT not in price.rates:
            raise InvalidJob(f"research.{parsed.mode} is not priced per task", param="params.mode")
        assert price.provider is not None
        return Admission(
            provider=price.provider,
            model=parsed.mode,
            price=price.name,
            max_usage={"tasks": 1},
            params=parsed.model_dump(mode="json"),
        )

    def serves(self, provider: str) -> bool:
        return provider in self.providers

    async def start(self, job: Job) -> Step:
        params = ResearchParams.model_validate(job.params)
        created = await self.providers[job.provider].create(
            ResearchTask(
                query=params.query,
                mode=params.mode,
                output_formats=tuple(params.output_formats),
                urls=tuple(str(u) for u in params.urls),
            )
        )
        return Accepted(created.id)

    async def poll(self, job: Job) -> Step:
        assert job.operation_id is not None
        status = await self.providers[job.provider].status(job.operation_id)
        if status is None:  # unchanged since the last read
            return Progress(None)
        return step_of(status)

    async def cancel(self, job: Job) -> bool:
        if job.operation_id is None or job.provider not in self.providers:
            return False
        await self.providers[job.provider].cancel(job.operation_id)
        return True


def step_of(status: ResearchStatus) -> Step:
    """What a task's status means for its job."""
    match status.state:
        case "queued" | "running":
            if not status.total_steps:
                return Progress(None)
            return Progress(min(99, 100 * status.step // status.total_steps))
        case "failed":
            return Failed(
                Outcome.PROVIDER_ERROR_BEFORE_OUTPUT,
                "research_failed",
                status.error or "the research task failed",
            )
        case "cancelled":
            return Failed(Outcome.JOB_CANCELLED, "cancelled", "the research task was cancelled")
    if status.cost_usd is None:  # Valyu reserves the mode's price at create: charge that
        return Done(_outputs(status), {"tasks": 1})
    return Done(_outputs(status), {COST_UNIT: usd_micros(status.cost_usd)})


def usd_micros(cost: Decimal) -> int:
    """A reported USD cost in whole micro-USD, rounded up."""
    return int((cost * 1_000_000).to_integral_value(rounding=ROUND_CEILING))


def _outputs(status: ResearchStatus) -> tuple[Output, ...]:
    report = status.output
    if isinstance(report, str):
        body = Output(report.encode(), "text/markdown; charset=utf-8")
    else:
        body = Output(orjson.dumps(report), "application/json")
    sources = {
        "title": status.title,
        "sources": [{"title": s.title, "url": s.url} for s in status.sources],
    }
    return (body, Output(orjson.dumps(sources), "application/json"))
