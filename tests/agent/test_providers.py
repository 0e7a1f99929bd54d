"""The agent through LangChain's real chat models against fake provider servers that speak each
provider's wire protocol over real HTTP: the usage each provider reports in a stream reaches the
meter (LangChain's streamed usage is easy to lose), and tool-call runs are metered per step."""

from __future__ import annotations

import uuid

import pytest

from lipika.agent.errors import StepFailed
from lipika.billing.models import HoldStatus
from lipika.billing.pricebook import PriceBook
from tests.agent.conftest import of_type, request, run_all
from tests.fixtures.fakes.fixtures import FakeProviders
from tests.fixtures.fakes.scenario import FakeCall

MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "xai": "grok-3-mini",
}
PRICES = PriceBook.load()
CALL = PRICES.get("agent.calculator").cost({"calls": 1})


@pytest.fixture(params=list(MODELS))
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fake_agent(make_agent, fake_provider_settings):
    return make_agent(**fake_provider_settings)


def reported(call: FakeCall) -> dict[str, int]:
    """What the fake put on the wire, in the price book's units."""
    assert call.usage_reported, call
    return {
        "input_tokens": call.input_tokens - call.cached_tokens,
        "cached_input_tokens": call.cached_tokens,
        "output_tokens": call.output_tokens,
    }


async def test_streamed_usage_reaches_the_meter(
    provider: str, fake_agent, fake_providers: FakeProviders, books
) -> None:
    workspace = await books.new_wallet(plan="pro")
    model = MODELS[provider]
    content = "Tell me something [[tokens=7 cached=3 reasoning=2]]"

    events = await run_all(fake_agent, request(workspace, content=content, model=model))

    assert events[-1]["type"] == "done", events[-1]
    call = fake_providers[provider].last_call
    assert call.stream and call.status == "completed"
    units = reported(call)
    assert units["cached_input_tokens"] == 3 and units["output_tokens"] == 9
    [usage] = of_type(events, "usage")
    assert {k: usage[k] for k in units} == units
    [hold] = await books.holds(workspace)
    assert (hold.status, hold.model, hold.usage) == (HoldStatus.CAPTURED, model, units)
    assert hold.captured == usage["credits_charged"] == PRICES.get(model).cost(units)
    assert "".join(e["text"] for e in of_type(events, "token")) == "w1 w2 w3 w4 w5 w6 w7"
    await books.assert_balanced()


async def test_a_tool_call_run_is_metered_step_by_step(
    provider: str, fake_agent, fake_providers: FakeProviders, books
) -> None:
    workspace = await books.new_wallet(plan="pro")
    model = MODELS[provider]
    content = 'What is six times seven? [[tool=calculator args={"expression":"6*7"}]]'

    events = await run_all(fake_agent, request(workspace, content=content, model=model))

    assert [e["type"] for e in events if e["type"] != "token"] == [
        "usage",
        "tool_start",
        "tool_end",
        "usage",
        "done",
    ], events
    start, end = of_type(events, "tool_start")[0], of_type(events, "tool_end")[0]
    assert (start["tool"], start["args"]) == ("calculator", {"expression": "6*7"})
    assert (end["output"], end["credits_charged"]) == ("42", CALL)
    assert "".join(e["text"] for e in of_type(events, "token")) == "The tool returned: 42"

    first, second = fake_providers[provider].calls[-2:]
    holds = await books.holds(workspace)
    assert [(h.operation, h.status, h.usage) for h in holds] == [
        ("agent.model", HoldStatus.CAPTURED, reported(first)),
        ("agent.tool", HoldStatus.CAPTURED, {"calls": 1}),
        ("agent.model", HoldStatus.CAPTURED, reported(second)),
    ]
    assert events[-1]["credits_charged"] == sum(h.captured for h in holds)
    await books.assert_balanced()


async def test_a_provider_refusing_the_call_releases_the_hold(
    provider: str, fake_agent, books
) -> None:
    workspace = await books.new_wallet(plan="pro")
    content = "Hello [[fail=overloaded]]"

    with pytest.raises(StepFailed) as failed:
        await run_all(fake_agent, request(workspace, content=content, model=MODELS[provider]))

    assert failed.value.code in ("provider_overloaded", "provider_error")
    [hold] = await books.holds(workspace)
    assert (hold.status, hold.outcome) == (HoldStatus.RELEASED, "provider_error_before_output")
    await books.assert_balanced()


async def test_a_provider_failing_mid_stream_ends_the_stream_with_a_typed_error(
    provider: str, fake_agent, books
) -> None:
    workspace = await books.new_wallet(plan="pro")
    content = "Hello [[tokens=8 fail=server at=3]]"

    run = await fake_agent.start(request(workspace, content=content, model=MODELS[provider]))
    events = [event async for event in run.events()]

    assert [e["type"] for e in events] == ["token"] * 3 + ["error"], events
    assert events[-1]["credits_charged"] == 0
    [hold] = await books.holds(workspace)
    assert (hold.status, hold.outcome) == (HoldStatus.RELEASED, "provider_error_mid_output")
    await books.assert_balanced()


async def test_one_thread_moves_between_providers_with_its_history(
    fake_agent, fake_providers: FakeProviders, books
) -> None:
    """Claude, then GPT (with a tool call), then Gemini, then Grok, on one thread: each model
    gets the whole conversation so far, in its own wire format."""
    workspace = await books.new_wallet(plan="pro")
    thread = uuid.uuid4()
    turns = [
        ("anthropic", "Hi Claude [[tokens=3]]"),
        ("openai", 'Now GPT: [[tool=calculator args={"expression":"2**10"}]]'),
        ("gemini", "Gemini, go on [[tokens=4]]"),
        ("xai", "And Grok [[tokens=2]]"),
    ]
    for provider, content in turns:
        events = await run_all(
            fake_agent, request(workspace, thread, content=content, model=MODELS[provider])
        )
        assert events[-1]["type"] == "done", (provider, events[-1])

    history = await fake_agent.history(thread)
    assert [m.type for m in history] == [
        *("human", "ai"),
        *("human", "ai", "tool", "ai"),
        *("human", "ai"),
        *("human", "ai"),
    ]
    assert [m.response_metadata.get("model") for m in history if m.type == "ai"] == [
        MODELS["anthropic"],
        MODELS["openai"],
        MODELS["openai"],
        MODELS["gemini"],
        MODELS["xai"],
    ]
    assert history[4].text == "1024"
    # The last call to each provider carried every message of the thread before its answer.
    sent = {
        "gemini": len(fake_providers.gemini.last_call.body["contents"]),
        "xai": len(fake_providers.xai.last_call.body["messages"]),
    }
    assert sent == {"gemini": 7, "xai": 9}
    holds = await books.holds(workspace)
    assert all(h.status == HoldStatus.CAPTURED for h in holds)
    assert len(holds) == 6
    await books.assert_balanced()


async def test_a_cancelled_run_hangs_up_on_the_provider(
    provider: str, fake_agent, fake_providers: FakeProviders, books
) -> None:
    """A client leaving mid-answer: the upstream call is cut at once (the fake sees the
    disconnect), and the step is charged what was delivered, within its hold."""
    workspace = await books.new_wallet(plan="pro")
    fake = fake_providers[provider]
    content = "Take your time [[tokens=200 delay_ms=20]]"
    run = await fake_agent.start(request(workspace, content=content, model=MODELS[provider]))
    events = run.events()
    async for event in events:
        if event["type"] == "token":
            break
    await events.aclose()  # what a disconnect does to the response's producer

    call = await fake.wait_for_call_status("disconnected", timeout=2)
    assert call.tokens_sent < 200
    [hold] = await books.holds(workspace)
    assert (hold.status, hold.outcome) == (HoldStatus.CAPTURED, "client_disconnect")
    assert 1 <= hold.usage["output_tokens"] < 200
    await books.assert_balanced()
