"""What a job kind is: how it is admitted (price, most usage) and how it moves a job forward.

The runner (jobs/runner.py) owns the lease, the hold and the settlement; a kind only turns a
job's stored parameters and operation id into provider calls and reports a `Step`. A kind whose
provider reports its own cost (deep research) puts it in `Done.usage`, in the price's units.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lipika.billing.policy import Outcome
from lipika.billing.pricebook import Price, PriceBook
from lipika.jobs.errors import InvalidJob
from lipika.jobs.models import Job

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Output:
    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider accepted the work: its operation id, to poll from now on."""

    operation_id: str


@dataclass(frozen=True, slots=True)
class Progress:
    percent: int | None = None


@dataclass(frozen=True, slots=True)
class Done:
    outputs: tuple[Output, ...]
    usage: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Failed:
    outcome: Outcome
    code: str
    message: str


Step = Accepted | Progress | Done | Failed


@dataclass(frozen=True, slots=True)
class Admission:
    """A submitted job, checked: who serves it, its price-book entry and the most it may use."""

    provider: str
    model: str
    price: str
    max_usage: Mapping[str, int]
    params: Mapping[str, Any] = field(default_factory=dict)


class JobKind(abc.ABC):
    name: str
    # How often a running job is polled, and how long it may take before it is failed.
    poll_seconds: float = 5.0
    deadline: timedelta = timedelta(minutes=30)
    # A kind whose work is one provider call (images) has no operation to resume: a job
    # interrupted mid-call is failed (free), never called twice.
    resumable: bool = True

    @abc.abstractmethod
    def admission(self, params: Mapping[str, Any], price_book: PriceBook) -> Admission:
        """Checks the parameters; raises `InvalidJob` naming the bad one."""

    @abc.abstractmethod
    async def start(self, job: Job) -> Step:
        """Submits the job's work (once)."""

    @abc.abstractmethod
    async def poll(self, job: Job) -> Step:
        """Where the provider operation of `job.operation_id` stands."""

    async def cancel(self, job: Job) -> bool:
        """Asks the provider to stop; False when it cannot."""
        return False

    def serves(self, provider: str) -> bool:
        """Whether this server can run the kind's jobs on `provider` (a key is configured)."""
        return True


def parse_params(model: type[P], params: Mapping[str, Any]) -> P:
    """A kind's parameters, or `InvalidJob` naming the first bad one (`params.<field>`)."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidJob(
            f"params.{where or 'params'}: {error['msg']}", param=f"params.{where}"
        ) from None


def tool_price(price_book: PriceBook, kind: str, model: str) -> Price:
    """The price-book entry `kind.model`, or `InvalidJob` naming the model."""
    price = price_book.get(f"{kind}.{model}")
    if price is None or price.kind != kind or price.provider is None:
        known = sorted(
            p.name.partition(".")[2]
            for p in price_book.prices.values()
            if p.kind == kind and p.provider
        )
        raise InvalidJob(
            f"no {kind} model {model!r}; known: {', '.join(known)}",
            code="model_not_found",
            param="model",
        )
    return price
