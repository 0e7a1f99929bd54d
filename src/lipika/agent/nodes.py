"""The graph's metered nodes: every model call and every tool call is admitted, executed and
settled where it runs, so a run that fails at step 3 has paid for steps 1 and 2 only.

Each step: check the run's step cap, size the hold (and fit it under the run's credit cap),
admit it through the meter, execute, settle by the charge policy. A failure releases its own
hold and ends the run with a typed error; a cancellation (client gone, budget spent) settles
the step in flight by its outcome, shielded so that the settlement outlives the cancellation.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

import structlog
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage, ToolMessage
from langgraph.graph.message import add_messages
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolInvocationError
from langgraph.runtime import Runtime
from langgraph.types import Command

from lipika.agent.context import RunContext
from lipika.agent.errors import ToolFailed, step_failed
from lipika.agent.tools import ToolInputError
from lipika.agent.usage import estimate_output_tokens, price_units
from lipika.billing.meter import Metered
from lipika.billing.policy import Outcome

log = structlog.get_logger()

TOOL_OUTPUT_EVENT_CHARS = 2000


class AgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def call_model(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, list[AIMessage]]:
    """One metered model step: the reply is streamed out as token events as it arrives."""
    ctx, emit = runtime.context, runtime.stream_writer
    messages = state["messages"]
    step = ctx.budget.take_step()
    input_tokens = ctx.estimate_input_tokens(messages)
    limit = ctx.budget.output_limit(ctx.price, input_tokens, ctx.max_output_tokens)
    max_usage = {"input_tokens": input_tokens, "output_tokens": limit}
    with ctx.budget.holding(ctx.price.cost(max_usage)):
        async with ctx.meter.hold(
            ctx.workspace_id,
            ctx.user_id,
            operation="agent.model",
            price=ctx.model_name,
            max_usage=max_usage,
            idempotency_key=f"agent:{ctx.run_id}:{step}",
        ) as held:
            ctx.mark_admitted()
            reply = await _stream_reply(ctx, held, messages, limit, input_tokens, emit)
            usage = _reported_usage(ctx, reply, input_tokens)
            settlement = await held.settle(Outcome.SUCCESS, usage=usage)
            ctx.budget.spend(settlement.charged)
    ctx.balance_after = settlement.balance_after
    emit(
        {
            "type": "usage",
            "step": step,
            "model": ctx.model_name,
            **usage,
            "credits_charged": settlement.charged,
            "balance_after": settlement.balance_after,
        }
    )
    return {"messages": [_as_history(reply, ctx.model_name, settlement.charged)]}


async def _stream_reply(
    ctx: RunContext,
    held: Metered,
    messages: Sequence[BaseMessage],
    limit: int,
    input_tokens: int,
    emit: Callable[[Any], None],
) -> AIMessageChunk:
    reply: AIMessageChunk | None = None
    try:
        async for chunk in ctx.model.astream(messages, **{ctx.output_limit_arg: limit}):
            reply = chunk if reply is None else reply + chunk  # type: ignore[assignment]
            if text := str(chunk.text):
                emit({"type": "token", "text": text})
    except asyncio.CancelledError:
        so_far = _usage_so_far(reply, input_tokens)
        outcome = ctx.stop_reason or Outcome.CLIENT_DISCONNECT
        await asyncio.shield(held.settle(outcome, usage=so_far, usage_so_far=so_far))
        raise
    except Exception as exc:
        produced = reply is not None and bool(str(reply.text) or reply.tool_call_chunks)
        raise step_failed(exc, produced_output=produced) from exc
    return reply if reply is not None else AIMessageChunk(content="")


def _reported_usage(ctx: RunContext, reply: AIMessageChunk, input_tokens: int) -> dict[str, int]:
    usage = price_units(reply.usage_metadata or {})
    if usage["input_tokens"] + usage["cached_input_tokens"] > 0:
        return usage
    # Never silently free: a provider that reported nothing is charged our estimate.
    log.warning("provider_usage_missing", model=ctx.model_name, run_id=str(ctx.run_id))
    return _usage_so_far(reply, input_tokens)


def _usage_so_far(reply: AIMessageChunk | None, input_tokens: int) -> dict[str, int]:
    """What was used up to a stop: as reported where the provider said, else estimated."""
    reported = price_units(reply.usage_metadata or {}) if reply is not None else {}
    if reported and reported["input_tokens"] + reported["cached_input_tokens"] > 0:
        reported["output_tokens"] = max(reported["output_tokens"], estimate_output_tokens(reply))
        return reported
    return {
        "input_tokens": input_tokens,
        "cached_input_tokens": 0,
        "output_tokens": estimate_output_tokens(reply),
    }


def _as_history(reply: AIMessageChunk, model: str, charged: int) -> AIMessage:
    """The reply as kept in the thread: plain text and standard tool calls, so that any
    provider's model can read it on the next turn (provider-specific blocks are dropped)."""
    return AIMessage(
        content=str(reply.text),
        tool_calls=reply.tool_calls,
        # Our own id: the thread's reducer replaces a message with the same id, and a provider
        # id is not ours to trust as unique across providers.
        id=str(uuid.uuid4()),
        usage_metadata=reply.usage_metadata,
        response_metadata={
            "model": model,
            "provider_message_id": reply.id,
            "finish_reason": _finish_reason(reply.response_metadata),
            "credits_charged": charged,
            "created_at": _now(),
        },
    )


def _finish_reason(metadata: Mapping[str, Any]) -> str | None:
    reason = metadata.get("finish_reason") or metadata.get("stop_reason")
    return str(reason) if reason else None


ToolExecute = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]


async def call_tool(request: ToolCallRequest, execute: ToolExecute) -> ToolMessage | Command:
    """One metered tool call (the ToolNode calls this around each tool it runs).

    A tool that rejects its input (`ToolInputError`, or arguments that fail its schema) tells
    the model, which may try again, and is not charged; a tool that raises anything else
    releases its hold and fails the run with `tool_failed`.
    """
    ctx: RunContext = request.runtime.context
    emit = request.runtime.stream_writer
    call = request.tool_call
    spec = ctx.tools.get(call["name"])
    if spec is None or request.tool is None:
        return _tool_error(call, f"there is no tool named {call['name']!r}")
    step = ctx.budget.take_step()
    price = ctx.meter.price_book.get(spec.price)
    assert price is not None  # every tool's price is checked when the agent is built
    with ctx.budget.holding(price.cost(spec.max_usage)):
        async with ctx.meter.hold(
            ctx.workspace_id,
            ctx.user_id,
            operation="agent.tool",
            price=spec.price,
            max_usage=spec.max_usage,
            idempotency_key=f"agent:{ctx.run_id}:{step}",
        ) as held:
            emit(
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
                await held.settle(Outcome.REFUSED_BY_PROVIDER)
                result = _tool_error(call, str(exc))
            except asyncio.CancelledError:
                outcome = ctx.stop_reason or Outcome.CLIENT_DISCONNECT
                await asyncio.shield(held.settle(outcome, usage={}, usage_so_far={}))
                raise
            except Exception as exc:
                log.warning("tool_failed", tool=call["name"], error=repr(exc))
                raise ToolFailed(f"the {call['name']} tool failed", tool=call["name"]) from exc
            else:
                await held.settle(Outcome.SUCCESS, usage=_tool_usage(spec.usage, result))
            settlement = held.settlement
            assert settlement is not None
            ctx.budget.spend(settlement.charged)
    if settlement.balance_after is not None:
        ctx.balance_after = settlement.balance_after
    if isinstance(result, ToolMessage):
        result.response_metadata.update(credits_charged=settlement.charged, created_at=_now())
    emit(
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


def _now() -> str:
    return datetime.now(UTC).isoformat()
