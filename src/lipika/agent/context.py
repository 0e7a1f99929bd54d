"""What one run carries into the graph's nodes: who pays, which model, and the run's limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lipika.agent.errors import RunCreditCapReached, RunStepLimitReached
from lipika.agent.tools import AgentTool, JobTools
from lipika.billing.meter import Meter
from lipika.billing.policy import Outcome
from lipika.billing.pricebook import TOKEN_BLOCK, Price
from lipika.billing.rules import KeyLimits
from lipika.kit.money import format_credits
from lipika.providers.base import ChatProvider, Tool

# The owner kind of each step's hold; its id is "<run_id>:<step>" (threads/leases.py resolves it).
STEP_OWNER = "agent.step"

# A model step that could write fewer tokens than this within the run's credit cap is not
# started: its answer would be cut off almost at once.
MIN_OUTPUT_TOKENS = 16


@dataclass
class RunBudget:
    """The run's step cap and optional credit cap, checked before every step is admitted.

    Steps are model calls and tool calls. Credits count what was captured plus what is held
    for steps in flight, so parallel tool calls cannot together pass the cap.
    """

    max_steps: int
    max_credits: int | None = None
    steps: int = 0
    spent: int = 0
    held: int = 0

    def take_step(self) -> int:
        if self.steps >= self.max_steps:
            raise RunStepLimitReached(
                f"the run reached its limit of {self.max_steps} steps", max_steps=self.max_steps
            )
        self.steps += 1
        return self.steps

    @property
    def room(self) -> int | None:
        """Micro-credits the run may still hold; None without a cap."""
        if self.max_credits is None:
            return None
        return self.max_credits - self.spent - self.held

    def output_limit(self, price: Price, input_tokens: int, wanted: int) -> int:
        """The most output tokens a model step may ask for within the cap (`wanted` without one)."""
        room = self.room
        if room is None:
            return wanted
        room -= price.cost({"input_tokens": input_tokens})
        rate = price.rates.get("output_tokens", 0)
        affordable = wanted if rate == 0 else max(room, 0) * TOKEN_BLOCK // rate
        limit = min(wanted, affordable)
        if limit < min(MIN_OUTPUT_TOKENS, wanted):
            raise self._cap_reached(
                price.cost({"input_tokens": input_tokens, "output_tokens": MIN_OUTPUT_TOKENS})
            )
        return limit

    @contextmanager
    def holding(self, amount: int) -> Iterator[None]:
        """Counts a step's hold against the cap while it is open."""
        room = self.room
        if room is not None and amount > room:
            raise self._cap_reached(amount)
        self.held += amount
        try:
            yield
        finally:
            self.held -= amount

    def spend(self, charged: int) -> None:
        self.spent += charged

    def _cap_reached(self, needed: int) -> RunCreditCapReached:
        assert self.max_credits is not None
        return RunCreditCapReached(
            f"the next step needs up to {format_credits(needed)} credits, more than is left "
            f"of this run's cap of {format_credits(self.max_credits)}",
            cap_micro=self.max_credits,
            spent_micro=self.spent,
            needed_micro=needed,
        )


async def _discard(event: dict[str, Any]) -> None:
    pass


@dataclass
class RunContext:
    """The runtime context of one agent run (LangGraph passes it to every node)."""

    run_id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID | None
    meter: Meter
    price: Price
    provider: ChatProvider  # the model's provider adapter
    max_output_tokens: int
    tools: Mapping[str, AgentTool]
    tool_specs: tuple[Tool, ...]  # the tools, as offered to the model
    budget: RunBudget
    api_key: KeyLimits | None = None  # the caller's API key, held to its models and budget
    # Where the run's events go (set by the run), awaited in the node's task.
    emit: Callable[[dict[str, Any]], Awaitable[None]] = field(default=_discard)
    # Set once the first step holds its credits: the run was admitted (see AgentRun.start).
    admitted: asyncio.Future[None] = field(default_factory=asyncio.Future)
    # Why the run is being cancelled, when it is: the step in flight settles by this outcome.
    stop_reason: Outcome | None = None
    balance_after: int | None = None
    last_model_step: int | None = None  # LangGraph's step number of the latest model call
    thread_id: uuid.UUID | None = None
    jobs: JobTools | None = None  # what the media tools submit jobs through

    @property
    def model_name(self) -> str:
        return self.price.name

    def mark_admitted(self) -> None:
        if not self.admitted.done():
            self.admitted.set_result(None)
