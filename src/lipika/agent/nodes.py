"""The graph's metered nodes: every model call and every tool call is admitted, executed and
settled where it runs, so a run that fails at step 3 has paid for steps 1 and 2 only.

Each step: check the run's step cap, size the hold (and fit it under the run's credit cap),
admit it through the meter, execute, settle by the charge policy. A failure releases its own
hold and ends the run with a typed error; a cancellation (client gone, budget spent) settles
the step in flight by its outcome, shielded so that the settlement outlives the cancellation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any, TypedDict

import structlog
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.message import add_messages
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolInvocationError
from langgraph.runtime import Runtime
from langgraph.types import Command

from lipika.agent.context import STEP_OWNER, RunContext
from lipika.agent.errors import ToolFailed, step_failed
from lipika.agent.history import Reply, as_history, now, to_provider
from lipika.agent.tools import ToolInputError
from lipika.billing.meter import Owner
from lipika.billing.policy import Outcome
from lipika.billing.session import MeteredCall
from lipika.providers.base import ChatRequest, Finish, ProviderError, Usage

log = structlog.get_logger()

TOOL_OUTPUT_EVENT_CHARS = 2000


class AgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def call_model(
    state: AgentState, runtime: Runtime[RunContext], config: RunnableConfig
) -> dict[str, list[AIMessage]]:
    """One metered model step: the reply is streamed out as token events as it arrives."""
    ctx = runtime.context
    step = ctx.budget.take_step()
    ctx.last_model_step = config["metadata"]["langgraph_step"]
    request = ChatRequest(
        model=ctx.model_name,
        messages=to_provider(state["messages"]),
        max_output_tokens=ctx.max_output_tokens,
        tools=ctx.tool_specs,
    )
    input_tokens = ctx.provider.estimate_input_tokens(request)
    limit = ctx.budget.output_limit(ctx.price, input_tokens, ctx.max_output_tokens)
    request = replace(request, max_output_tokens=limit)
    max_usage = {"input_tokens": input_tokens, "output_tokens": limit}
    with ctx.budget.holding(ctx.price.cost(max_usage)):
        try:
            async with ctx.meter.session(
                ctx.workspace_id,
                ctx.user_id,
                operation="agent.model",
                price=ctx.model_name,
                max_usage=max_usage,
                owner=Owner(STEP_OWNER, f"{ctx.run_id}:{step}"),
                idempotency_key=f"agent:{ctx.run_id}:{step}",
                stopped=lambda: ctx.stop_reason,
                api_key=ctx.api_key,
            ) as metered:
                ctx.mark_admitted()
                reply = await _stream_reply(ctx, metered, request)
                settlement = await metered.succeed()
                usage = metered.usage()
                ctx.budget.spend(settlement.charged)
        except ProviderError as exc:
            raise step_failed(exc, produced_output=metered.produced_output) from exc
    ctx.balance_after = settlement.balance_after
    await ctx.emit(
        {
            "type": "usage",
            "step": step,
            "model": ctx.model_name,
            **usage.units(),
            "credits_charged": settlement.charged,
            "balance_after": settlement.balance_after,
        }
    )
    return {"messages": [as_history(reply, usage, ctx.model_name, settlement.charged)]}


async def _stream_reply(ctx: RunContext, metered: MeteredCall, request: ChatRequest) -> Reply:
    """Streams the call through the provider's adapter, each text delta out as it comes, and
    tells the session what was delivered. The adapter's stream is closed however this ends,
    which hangs up on the provider when the run is cancelled."""
    emit = ctx.emit
    parts: list[str] = []
    usage: Usage | None = None
    finish: Finish | None = None
    async with contextlib.aclosing(ctx.provider.stream(request)) as events:
        async for event in events:
            if type(event) is str:
                parts.append(event)
                await emit({"type": "token", "text": event})
                metered.deliver(event)
            elif isinstance(event, Usage):
                usage = event
                metered.report(event)
            elif isinstance(event, Finish):
                finish = event
                metered.deliver_tool_calls(event.tool_calls)
    return Reply(
        "".join(parts),
        finish.tool_calls if finish else (),
        usage,
        finish.reason if finish else None,
    )


ToolExecute = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]


async def call_tool(request: ToolCallRequest, execute: ToolExecute) -> ToolMessage | Command:
    """One metered tool call (the ToolNode calls this around each tool it runs).

    A tool that rejects its input (`ToolInputError`, or arguments that fail its schema) tells
    the model, which may try again, and is not charged; a tool that raises anything else
    releases its hold and fails the run with `tool_failed`.
    """
    ctx: RunContext = request.runtime.context
    emit = ctx.emit
    call = request.tool_call
    spec = ctx.tools.get(call["name"])
    if spec is None or request.tool is None:
        return _tool_error(call, f"there is no tool named {call['name']!r}")
    step = ctx.budget.take_step()
    price = ctx.meter.price_book.get(spec.price)
    assert price is not None  # every tool's price is checked when the agent is built
    with ctx.budget.holding(price.cost(spec.max_usage)):
        async with ctx.meter.session(
            ctx.workspace_id,
            ctx.user_id,
            operation="agent.tool",
            price=spec.price,
            max_usage=spec.max_usage,
            owner=Owner(STEP_OWNER, f"{ctx.run_id}:{step}"),
            idempotency_key=f"agent:{ctx.run_id}:{step}",
            stopped=lambda: ctx.stop_reason,
            api_key=ctx.api_key,
        ) as metered:
            await emit(
                {
                    "type": "tool_start",
                    "step": step,
                    "call_id": call["id"],
                    "tool": call["name"],
                    "args": call["args"],
                }
            )
            try:
                result = await execute(request)
            except (ToolInputError, ToolInvocationError) as exc:
                settlement = await metered.settle(Outcome.REFUSED_BY_PROVIDER)
                result = _tool_error(call, str(exc))
            except Exception as exc:
                log.warning("tool_failed", tool=call["name"], error=repr(exc))
                raise ToolFailed(f"the {call['name']} tool failed", tool=call["name"]) from exc
            else:
                metered.report_units(_tool_usage(spec.usage, result))
                settlement = await metered.succeed()
            ctx.budget.spend(settlement.charged)
    if settlement.balance_after is not None:
        ctx.balance_after = settlement.balance_after
    if isinstance(result, ToolMessage):
        result.response_metadata.update(credits_charged=settlement.charged, created_at=now())
    await emit(
        {
            "type": "tool_end",
            "step": step,
            "call_id": call["id"],
            "tool": call["name"],
            "status": getattr(result, "status", "success"),
            "output": _output_text(result)[:TOOL_OUTPUT_EVENT_CHARS],
            "credits_charged": settlement.charged,
            "balance_after": settlement.balance_after,
        }
    )
    return result


def _tool_usage(
    usage: Callable[[ToolMessage], Mapping[str, int]], result: ToolMessage | Command
) -> Mapping[str, int]:
    return usage(result) if isinstance(result, ToolMessage) else {"calls": 1}


def _tool_error(call: Mapping[str, Any], message: str) -> ToolMessage:
    return ToolMessage(
        content=f"error: {message}", tool_call_id=call["id"], name=call["name"], status="error"
    )


def _output_text(result: ToolMessage | Command) -> str:
    return str(result.text) if isinstance(result, ToolMessage) else ""
