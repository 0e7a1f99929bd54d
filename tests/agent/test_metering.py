"""Metering inside the graph's nodes: each model step and each tool call is admitted, executed
and settled where it runs, on both backends, and the ledger audit balances after every run."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import StructuredTool

from lipika.agent.errors import RunCreditCapReached, StepFailed
from lipika.agent.tools import TOOLS, AgentTool
from lipika.billing.models import HoldStatus
from lipika.billing.policy import Outcome
from lipika.billing.pricebook import PriceBook
from lipika.providers.base import ChatRequest, Message, ProviderOverloaded
from lipika.providers.demo import DemoProvider
from tests.agent.conftest import of_type, request, run_all
from tests.agent.scripted import Reply, Script

PRICES = PriceBook.load()
DEMO = PRICES.get("demo")
CALL = PRICES.get("agent.calculator").cost({"calls": 1})


def demo_cost(input_tokens: int, output_tokens: int, cached: int = 0) -> int:
    return DEMO.cost(
        {
            "input_tokens": input_tokens - cached,
            "cached_input_tokens": cached,
            "output_tokens": output_tokens,
        }
    )


def calculator_then_answer(answer: str = "The answer is 42") -> Script:
    return Script(
        [
            Reply(tool_calls=[("calculator", {"expression": "6*7"})], input_tokens=100),
            Reply(text=answer, input_tokens=150, cached_tokens=100),
        ]
    )


async def _explode() -> str:
    raise RuntimeError("the tool broke")


EXPLODING = AgentTool(
    StructuredTool.from_function(coroutine=_explode, name="explode", description="Always fails."),
    price="agent.calculator",
)


async def test_a_tool_run_meters_every_step_where_it_runs(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    before = await books.state(workspace)
    script = calculator_then_answer()
    thread = uuid.uuid4()

    events = await run_all(make_agent(script), request(workspace, thread))

    first, second = demo_cost(100, 5), demo_cost(150, 4, cached=100)
    assert [e["type"] for e in events] == [
        "usage",
        "tool_start",
        "tool_end",
        *["token"] * 4,
        "usage",
        "done",
    ]
    usage = of_type(events, "usage")
    assert [u["credits_charged"] for u in usage] == [first, second]
    assert usage[1] | {"balance_after": None} == {
        "type": "usage",
        "step": 3,
        "model": "demo",
        "input_tokens": 50,
        "cached_input_tokens": 100,
        "output_tokens": 4,
        "credits_charged": second,
        "balance_after": None,
    }
    start, end = of_type(events, "tool_start")[0], of_type(events, "tool_end")[0]
    assert start | {"call_id": None} == {
        "type": "tool_start",
        "step": 2,
        "call_id": None,
        "tool": "calculator",
        "args": {"expression": "6*7"},
    }
    assert (end["status"], end["output"], end["credits_charged"], end["call_id"]) == (
        "success",
        "42",
        CALL,
        start["call_id"],
    )
    assert "".join(e["text"] for e in of_type(events, "token")) == "The answer is 42"
    total = first + CALL + second
    assert events[-1] == {
        "type": "done",
        "credits_charged": total,
        "balance_after": before.balance - total,
        "steps": 3,
    }

    holds = await books.holds(workspace)
    assert [(h.operation, h.model, h.status, h.captured) for h in holds] == [
        ("agent.model", "demo", HoldStatus.CAPTURED, first),
        ("agent.tool", "agent.calculator", HoldStatus.CAPTURED, CALL),
        ("agent.model", "demo", HoldStatus.CAPTURED, second),
    ]
    assert holds[0].usage == {"input_tokens": 100, "cached_input_tokens": 0, "output_tokens": 5}
    assert sorted(-e.amount for e in await books.entries(workspace) if e.kind == "usage") == sorted(
        [first, CALL, second]
    )
    state = await books.state(workspace)
    assert (state.balance, state.held) == (before.balance - total, 0)
    await books.assert_balanced()

    # The second model call saw the tool's result; the thread keeps the whole exchange.
    answer = script.calls[1].messages[-1]
    assert (answer.role, answer.content, answer.name) == ("tool", "42", "calculator")
    history = await make_agent().history(thread)
    assert [type(m) for m in history] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert history[1].tool_calls[0]["name"] == "calculator"
    assert history[3].response_metadata["credits_charged"] == second


async def test_a_failing_tool_releases_its_hold_and_ends_the_run_with_a_typed_error(
    books, make_agent
) -> None:
    workspace = await books.new_wallet(plan="pro")
    before = await books.state(workspace)
    thread = uuid.uuid4()
    script = Script([Reply(tool_calls=[("explode", {})])])

    events = await run_all(
        make_agent(script, tools=[*TOOLS, EXPLODING]), request(workspace, thread)
    )

    first = demo_cost(100, 5)
    assert [e["type"] for e in events] == ["usage", "tool_start", "error"]
    error = events[-1]
    assert error["error"]["code"] == "tool_failed"
    assert error["error"]["type"] == "api_error"
    assert (error["credits_charged"], error["steps"]) == (first, 2)
    holds = await books.holds(workspace)
    assert [(h.operation, h.status, h.outcome) for h in holds] == [
        ("agent.model", HoldStatus.CAPTURED, "success"),
        ("agent.tool", HoldStatus.RELEASED, "internal_error"),
    ]
    state = await books.state(workspace)
    assert (state.balance, state.held) == (before.balance - first, 0)
    await books.assert_balanced()

    # The unanswered tool call is closed on the next message, so the thread still works.
    follow_up = Script([Reply(text="Sorry about that")])
    events = await run_all(make_agent(follow_up), request(workspace, thread, "Try again?"))
    assert events[-1]["type"] == "done"
    sent = follow_up.calls[0].messages
    assert sent[-2].role == "tool" and sent[-2].content.startswith("error:")
    assert sent[-2].tool_call_id == sent[-3].tool_calls[0].id


async def test_a_tool_input_error_goes_back_to_the_model_uncharged(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    script = Script(
        [
            Reply(tool_calls=[("calculator", {"expression": "1/0"})]),
            Reply(text="You cannot divide by zero"),
        ]
    )

    events = await run_all(make_agent(script), request(workspace))

    end = of_type(events, "tool_end")[0]
    assert (end["status"], end["credits_charged"]) == ("error", 0)
    assert "division by zero" in end["output"]
    assert events[-1]["type"] == "done"
    holds = await books.holds(workspace)
    assert [(h.status, h.outcome) for h in holds] == [
        (HoldStatus.CAPTURED, "success"),
        (HoldStatus.RELEASED, "refused_by_provider"),
        (HoldStatus.CAPTURED, "success"),
    ]
    await books.assert_balanced()


async def test_a_run_failing_at_step_3_pays_for_steps_1_and_2_only(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    before = await books.state(workspace)
    script = Script(
        [
            Reply(tool_calls=[("calculator", {"expression": "6*7"})]),
            Reply(text="The answer is", error=ProviderOverloaded("upstream 529"), fail_after=2),
        ]
    )

    events = await run_all(make_agent(script), request(workspace))

    paid = demo_cost(100, 5) + CALL
    assert [e["type"] for e in events] == [
        "usage",
        "tool_start",
        "tool_end",
        "token",
        "token",
        "error",
    ]
    assert events[-1]["error"]["code"] == "provider_overloaded"
    assert (events[-1]["credits_charged"], events[-1]["steps"]) == (paid, 3)
    holds = await books.holds(workspace)
    assert [(h.status, h.outcome) for h in holds] == [
        (HoldStatus.CAPTURED, "success"),
        (HoldStatus.CAPTURED, "success"),
        (HoldStatus.RELEASED, "provider_error_mid_output"),
    ]
    state = await books.state(workspace)
    assert (state.balance, state.held) == (before.balance - paid, 0)
    await books.assert_balanced()


async def test_the_step_cap_ends_the_run_before_the_step_past_it(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    script = calculator_then_answer()

    events = await run_all(make_agent(script), request(workspace, max_steps=2))

    assert events[-1]["error"]["code"] == "run_step_limit"
    assert events[-1]["credits_charged"] == demo_cost(100, 5) + CALL
    assert len(script.calls) == 1  # the third step was never admitted
    assert len(await books.holds(workspace)) == 2
    await books.assert_balanced()


async def test_the_settings_step_cap_bounds_what_a_message_asks(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    events = await run_all(
        make_agent(calculator_then_answer(), agent_max_steps=1), request(workspace, max_steps=50)
    )
    assert events[-1]["error"]["code"] == "run_step_limit"
    assert events[-1]["steps"] == 1


async def test_the_credit_cap_shortens_the_answer_and_is_never_passed(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    cap = 20_000  # micro-credits: the demo's input (~12 tokens) and about 37 output tokens

    events = await run_all(
        make_agent(), request(workspace, content="Hello there, how are you?", max_credits=cap)
    )

    assert events[-1]["type"] == "done"
    assert 0 < events[-1]["credits_charged"] <= cap
    usage = of_type(events, "usage")[0]
    assert 16 <= usage["output_tokens"] < 64  # shortened from the demo's 64+ words
    holds = await books.holds(workspace)
    assert holds[0].amount <= cap
    await books.assert_balanced()


async def test_a_credit_cap_too_small_for_the_first_step_refuses_the_run(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    with pytest.raises(RunCreditCapReached) as refused:
        await run_all(make_agent(), request(workspace, max_credits=1_000))
    assert refused.value.code == "run_credit_cap"
    assert await books.holds(workspace) == []


async def test_the_credit_cap_stops_a_run_between_steps(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    script = Script(
        [
            Reply(
                tool_calls=[("calculator", {"expression": "6*7"})],
                input_tokens=100,
                output_tokens=100,
            )
        ]
        * 3
    )
    agent = make_agent(script)
    cap = 100_000

    events = await run_all(agent, request(workspace, max_credits=cap))

    assert events[-1]["error"]["code"] == "run_credit_cap"
    assert events[-1]["credits_charged"] <= cap
    assert all(h.amount <= cap for h in await books.holds(workspace))
    await books.assert_balanced()


async def test_a_refusal_before_the_first_step_is_raised_by_start(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="free")
    await books.set_available(workspace, 0)
    with pytest.raises(Exception) as refused:
        await run_all(make_agent(), request(workspace))
    assert refused.value.code == "insufficient_credits"
    assert await books.holds(workspace) == []


async def test_a_provider_failing_before_any_output_is_raised_by_start(books, make_agent) -> None:
    """No stream that holds only an error: the caller answers with the provider's status."""
    workspace = await books.new_wallet(plan="pro")
    script = Script([Reply(error=ProviderOverloaded("down"))])
    with pytest.raises(StepFailed) as failed:
        await run_all(make_agent(script), request(workspace))
    assert (failed.value.status_code, failed.value.code) == (503, "provider_overloaded")
    assert [(h.status, h.outcome) for h in await books.holds(workspace)] == [
        (HoldStatus.RELEASED, "provider_error_before_output")
    ]
    await books.assert_balanced()


async def test_a_provider_failing_after_the_first_wait_ends_the_stream_with_an_error(
    books, make_agent
) -> None:
    workspace = await books.new_wallet(plan="pro")
    script = Script([Reply(text="late", error=ProviderOverloaded("down"), fail_after=1, delay=0.2)])
    run = await make_agent(script, stream_heartbeat_seconds=0.05).start(request(workspace))
    events = [event async for event in run.events()]
    assert [e["type"] for e in events] == ["token", "error"]
    assert events[-1]["error"]["code"] == "provider_overloaded"
    await books.assert_balanced()


def slow_demo(delay: float) -> DemoProvider:
    return DemoProvider(token_delay=delay)


async def test_a_client_leaving_mid_stream_is_charged_the_tokens_it_got(books, make_agent) -> None:
    workspace = await books.new_wallet(plan="pro")
    run = await make_agent(slow_demo(0.02)).start(request(workspace, content="Hello there"))
    events = run.events()
    received = []
    async for event in events:
        received.append(event)
        if len(received) == 3:
            break
    await events.aclose()  # what a disconnect does to the response's producer

    [hold] = await books.holds(workspace)
    assert (hold.status, hold.outcome) == (HoldStatus.CAPTURED, "client_disconnect")
    input_tokens = DemoProvider().estimate_input_tokens(
        ChatRequest("demo", [Message("user", "Hello there")], max_output_tokens=1)
    )
    assert hold.usage["input_tokens"] == input_tokens
    assert 3 <= hold.usage["output_tokens"] <= 5
    assert hold.captured == demo_cost(input_tokens, hold.usage["output_tokens"])
    state = await books.state(workspace)
    assert state.held == 0
    await books.assert_balanced()


async def test_a_disconnect_during_a_cancellation_still_settles(books, make_agent) -> None:
    """The settlement is shielded: cancelling the waiter again does not leave the hold open."""
    workspace = await books.new_wallet(plan="pro")
    run = await make_agent(slow_demo(0.02)).start(request(workspace))
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(run.cancel(Outcome.CLIENT_DISCONNECT))
    await asyncio.sleep(0)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    async with asyncio.timeout(5):
        while (await books.holds(workspace))[0].status == HoldStatus.OPEN:
            await asyncio.sleep(0.01)
    assert (await books.state(workspace)).held == 0
    await books.assert_balanced()


async def test_a_run_past_the_stream_budget_ends_with_a_timeout_and_is_free(
    books, make_agent
) -> None:
    workspace = await books.new_wallet(plan="pro")
    events = await run_all(
        make_agent(slow_demo(0.05), stream_budget_seconds=0.2), request(workspace)
    )
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "provider_timeout"
    assert [(h.status, h.outcome) for h in await books.holds(workspace)] == [
        (HoldStatus.RELEASED, "provider_timeout")
    ]
    await books.assert_balanced()


def test_step_failed_carries_the_provider_outcome() -> None:
    from lipika.agent.errors import step_failed
    from lipika.providers.base import (
        ProviderError,
        ProviderRateLimited,
        ProviderRejected,
        ProviderTimeout,
    )

    cases = {
        ProviderTimeout("t"): ("provider_timeout", "provider_timeout"),
        ProviderRateLimited("r"): ("provider_rate_limited", "provider_error_before_output"),
        ProviderRejected("bad"): ("provider_rejected_request", "refused_by_provider"),
        ProviderError("?"): ("provider_error", "provider_error_before_output"),
    }
    for exc, (code, outcome) in cases.items():
        error = step_failed(exc, produced_output=False)
        assert isinstance(error, StepFailed)
        assert (error.code, error.outcome.value) == (code, outcome)
    assert (
        step_failed(ProviderError(), produced_output=True).outcome.value
        == "provider_error_mid_output"
    )


async def test_a_provider_that_reports_no_usage_is_charged_the_estimate(books, make_agent) -> None:
    """Never silently free: a stream that lost its usage is charged what the hold estimated
    for the input and the tokens actually delivered."""
    workspace = await books.new_wallet(plan="pro")
    script = Script([Reply(text="one two three four", report_usage=False)])

    events = await run_all(make_agent(script), request(workspace))

    [usage] = of_type(events, "usage")
    [hold] = await books.holds(workspace)
    assert usage["input_tokens"] > 0 and usage["output_tokens"] == 5  # 19 characters, 4 a token
    assert hold.usage == {
        k: usage[k] for k in ("input_tokens", "cached_input_tokens", "output_tokens")
    }
    assert hold.captured == usage["credits_charged"] > 0
