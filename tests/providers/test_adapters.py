"""Every adapter, through its real SDK, against its fake provider over real HTTP.

The fakes count input tokens as the words of each message plus 3 a message (see
tests/fixtures/fakes/scenario.py), so the request below, a system message of 2 words and a user
message of N words, is reported as exactly 2 + 3 + N + 3 input tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from lipika.providers.base import (
    ChatProvider,
    ChatRequest,
    Finish,
    Message,
    ProviderAuthFailed,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    StreamEvent,
    Tool,
    ToolCall,
    Usage,
)
from tests.fixtures.fakes.scenario import FakeCall
from tests.fixtures.fakes.server import FakeServer
from tests.providers.conftest import ADAPTERS

FAILURES = {
    "rate_limit": ProviderRateLimited,
    "overloaded": ProviderOverloaded,
    "bad_request": ProviderRejected,
    "auth": ProviderAuthFailed,
    "server": ProviderError,
}


def chat(text: str, *, max_tokens: int = 100) -> ChatRequest:
    return ChatRequest(
        model="test-model",
        messages=[Message("system", "Be brief."), Message("user", text)],
        max_output_tokens=max_tokens,
    )


def expected_input(text: str) -> int:
    return 2 + 3 + len(text.split()) + 3


def reported(call: FakeCall) -> Usage:
    """The usage the fake put on the wire, in the ledger's terms."""
    assert call.usage_reported
    return Usage(call.input_tokens, call.output_tokens, call.cached_tokens)


def words(count: int) -> list[str]:
    return [f"w{i}" if i == 1 else f" w{i}" for i in range(1, count + 1)]


async def drain(events: AsyncIterator[StreamEvent], into: list[StreamEvent]) -> None:
    async for event in events:
        into.append(event)


def split(events: list[StreamEvent]) -> tuple[list[str], list[Usage], list[Finish]]:
    return (
        [e for e in events if isinstance(e, str)],
        [e for e in events if isinstance(e, Usage)],
        [e for e in events if isinstance(e, Finish)],
    )


# -- answers ---------------------------------------------------------------------------------


async def test_stream_arrives_delta_by_delta(adapter: ChatProvider, fake: FakeServer) -> None:
    text = "Say hello [[tokens=5 delay_ms=20]]"
    events: list[StreamEvent] = []
    sent_at_first_delta = None
    async for event in adapter.stream(chat(text)):
        if isinstance(event, str) and sent_at_first_delta is None:
            sent_at_first_delta = fake.last_call.tokens_sent
        events.append(event)

    deltas, usages, finishes = split(events)
    assert deltas == words(5)
    assert sent_at_first_delta is not None and sent_at_first_delta < 5  # relayed, not buffered
    assert events[-1] == Finish("stop") and finishes == [Finish("stop")]
    call = await fake.wait_for_call_status("completed")
    assert call.stream and call.model == "test-model" and call.tokens_sent == 5
    assert usages[-1] == reported(call) == Usage(expected_input(text), 5, 0)


async def test_complete(adapter: ChatProvider, fake: FakeServer) -> None:
    text = "Say hello [[tokens=4]]"
    result = await adapter.complete(chat(text))

    call = await fake.wait_for_call_status("completed")
    assert not call.stream
    assert result.text == "w1 w2 w3 w4"
    assert result.finish_reason == "stop"
    assert result.usage == reported(call) == Usage(expected_input(text), 4, 0)
    assert result.provider_request_id


async def test_output_limit_finishes_with_length(adapter: ChatProvider, fake: FakeServer) -> None:
    events: list[StreamEvent] = []
    await drain(adapter.stream(chat("[[tokens=10]]", max_tokens=3)), events)
    deltas, usages, finishes = split(events)
    assert deltas == words(3) and finishes == [Finish("length")]
    assert usages[-1].output_tokens == 3

    result = await adapter.complete(chat("[[tokens=10]]", max_tokens=3))
    assert result.text == "w1 w2 w3" and result.finish_reason == "length"


async def test_cached_and_reasoning_tokens(adapter: ChatProvider, fake: FakeServer) -> None:
    """Input includes the cached tokens; output includes the reasoning ones, however each
    provider reports them (xAI apart from completion_tokens, Anthropic as cache reads)."""
    text = "Think hard about it [[tokens=3 cached=4 reasoning=5]]"
    expected = Usage(expected_input(text), 3 + 5, 4)

    events: list[StreamEvent] = []
    await drain(adapter.stream(chat(text)), events)
    deltas, usages, _ = split(events)
    assert deltas == words(3)  # thinking is not relayed as text
    assert usages[-1] == reported(fake.last_call) == expected
    assert fake.last_call.reasoning_tokens == 5
    assert usages[-1].units() == {
        "input_tokens": expected.input_tokens - 4,
        "cached_input_tokens": 4,
        "output_tokens": 8,
    }

    result = await adapter.complete(chat(text))
    assert result.text == "w1 w2 w3"
    assert result.usage == reported(fake.last_call) == expected


async def test_request_shape(adapter: ChatProvider, fake: FakeServer, name: str) -> None:
    """System messages where each API wants them; usage asked for where it must be."""
    request = ChatRequest(
        model="test-model",
        messages=[
            Message("system", "Be brief."),
            Message("user", "Hi"),
            Message("assistant", "Hello"),
            Message("user", "Again [[tokens=1]]"),
        ],
        max_output_tokens=7,
    )
    await drain(adapter.stream(request), [])
    body = fake.last_call.body
    if name in ("openai", "xai"):
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
        assert body["stream_options"] == {"include_usage": True}
        assert body["max_completion_tokens"] == 7
    elif name == "anthropic":
        assert body["system"] == "Be brief."
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["max_tokens"] == 7
    else:
        assert body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert body["generationConfig"]["maxOutputTokens"] == 7
    assert fake.last_call.input_tokens == (2 + 1 + 1 + 2) + 4 * 3


# -- tools -----------------------------------------------------------------------------------

ADD = Tool(
    "add",
    "Adds two numbers.",
    {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)


def asking_for_a_tool(*answer: Message) -> ChatRequest:
    return ChatRequest(
        model="test-model",
        messages=[Message("user", 'Add them [[tool=add args={"a":2,"b":40}]]'), *answer],
        max_output_tokens=100,
        tools=(ADD,),
    )


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "complete"])
async def test_tool_call_and_its_answer(
    adapter: ChatProvider, fake: FakeServer, streamed: bool
) -> None:
    """The model's call arrives whole (streamed arguments joined and parsed); the conversation
    goes back with the call and its result in the provider's own shapes, and the fake (which
    refuses an undeclared tool) reads the result."""
    if streamed:
        events: list[StreamEvent] = []
        await drain(adapter.stream(asking_for_a_tool()), events)
        deltas, usages, finishes = split(events)
        assert deltas == [] and len(finishes) == 1
        finish = finishes[0]
        reason, calls = finish.reason, finish.tool_calls
        assert usages[-1] == reported(fake.last_call)
    else:
        result = await adapter.complete(asking_for_a_tool())
        reason, calls = result.finish_reason, result.tool_calls
        assert result.usage == reported(fake.last_call)
    assert reason == "tool_calls"
    (call,) = calls
    assert call.name == "add" and call.arguments == {"a": 2, "b": 40} and call.id

    answered = asking_for_a_tool(
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "42", tool_call_id=call.id, name="add"),
    )
    if streamed:
        events = []
        await drain(adapter.stream(answered), events)
        deltas, _, finishes = split(events)
        text, finish = "".join(deltas), finishes[0]
        assert finish == Finish("stop")
    else:
        result = await adapter.complete(answered)
        text = result.text
        assert result.finish_reason == "stop" and result.tool_calls == ()
    assert text == "The tool returned: 42"
    # The call's arguments and the result are both counted as input by the fake.
    assert fake.last_call.input_tokens >= 3 * 3 + 1


def test_tool_calls_count_toward_the_estimate() -> None:
    plain = chat("hello")
    with_tools = ChatRequest(
        model="m",
        messages=[
            *plain.messages,
            Message("assistant", "", tool_calls=(ToolCall("c1", "add", {"a": 2, "b": 40}),)),
            Message("tool", "42", tool_call_id="c1", name="add"),
        ],
        max_output_tokens=10,
        tools=(ADD,),
    )
    base = ChatProvider.estimate_input_tokens
    assert base(None, with_tools) > base(None, plain) + 2 * 8 + 40  # type: ignore[arg-type]


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FAILURES))
async def test_failure_before_output(
    adapter: ChatProvider, fake: FakeServer, name: str, kind: str
) -> None:
    expected = FAILURES[kind]
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as raised:
        await drain(adapter.stream(chat(f"[[fail={kind}]]")), events)
    assert type(raised.value) is expected, raised.value
    assert events == []
    call = fake.last_call
    assert call.status == "failed" and call.http_status >= 400
    assert f"{name} answered {call.http_status}" in str(raised.value)  # with the provider's words

    with pytest.raises(ProviderError) as raised:
        await adapter.complete(chat(f"[[fail={kind}]]"))
    assert type(raised.value) is expected, raised.value


@pytest.mark.parametrize("kind", ["server", "overloaded"])
async def test_failure_mid_stream(adapter: ChatProvider, fake: FakeServer, kind: str) -> None:
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as raised:
        await drain(adapter.stream(chat(f"[[tokens=6 fail={kind} at=3]]")), events)
    assert split(events)[0] == words(3)
    assert not any(isinstance(e, Finish) for e in events)
    assert not isinstance(raised.value, ProviderTimeout)
    message = str(raised.value).lower()
    assert "overloaded" in message if kind == "overloaded" else "error" in message
    assert (await fake.wait_for_call_status("failed")).tokens_sent == 3


@pytest.mark.parametrize("after", [0, 2])
async def test_dropped_connection(adapter: ChatProvider, fake: FakeServer, after: int) -> None:
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as raised:
        await drain(adapter.stream(chat(f"[[tokens=6 drop={after}]]")), events)
    assert type(raised.value) is ProviderError  # a connection error, not a timeout
    assert split(events)[0] == words(after)


async def test_stream_without_its_terminal_event(adapter: ChatProvider, fake: FakeServer) -> None:
    """The body ends cleanly after 2 tokens, but without [DONE] / message_stop / a finish."""
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as raised:
        await drain(adapter.stream(chat("[[tokens=6 truncate=2]]")), events)
    assert type(raised.value) is ProviderError
    assert split(events)[0] == words(2)


async def test_wrong_key(
    name: str, fake: FakeServer, adapters: Callable[..., ChatProvider]
) -> None:
    wrong = "sk-wrong-key-0000000000000000"
    adapter = adapters(name, api_key=wrong)
    with pytest.raises(ProviderAuthFailed) as raised:
        await drain(adapter.stream(chat("[[tokens=2]]")), [])
    assert wrong not in str(raised.value)
    with pytest.raises(ProviderAuthFailed):
        await adapter.complete(chat("[[tokens=2]]"))
    assert [c.status for c in fake.calls] == ["failed", "failed"]


async def test_no_key_is_listed_but_unavailable(name: str, fake: FakeServer) -> None:
    adapter = ADAPTERS[name](None, fake.base_url, timeout=5.0, max_retries=0)
    assert not adapter.available
    assert adapter._client is None  # nothing was built
    with pytest.raises(ProviderAuthFailed):
        await adapter.complete(chat("hi"))
    await adapter.aclose()
    assert fake.calls == []


async def test_timeout(name: str, fake: FakeServer, adapters: Callable[..., ChatProvider]) -> None:
    """Before the answer, before the stream, and mid-stream (run at once to keep it quick)."""
    adapter = adapters(name, timeout=0.2)
    mid_stream: list[StreamEvent] = []
    started = time.monotonic()
    outcomes = await asyncio.gather(
        adapter.complete(chat("[[fail=timeout]]")),
        drain(adapter.stream(chat("[[fail=timeout]]")), []),
        drain(adapter.stream(chat("[[tokens=5 fail=timeout at=2]]")), mid_stream),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [ProviderTimeout] * 3, outcomes
    assert split(mid_stream)[0] == words(2)
    assert time.monotonic() - started < 2
    for index in range(3):  # the client gave up and hung up each time
        await fake.wait_for_call_status("disconnected", index=index)


# -- cancellation ----------------------------------------------------------------------------


async def test_closing_the_stream_disconnects(adapter: ChatProvider, fake: FakeServer) -> None:
    events = adapter.stream(chat("[[tokens=200 delay_ms=10]]"))
    deltas = []
    async for event in events:
        if isinstance(event, str):
            deltas.append(event)
            if len(deltas) == 2:
                break
    await events.aclose()

    call = await fake.wait_for_call_status("disconnected", timeout=2)
    assert deltas == words(2)
    assert call.tokens_sent < 200


async def test_cancelling_the_reader_disconnects(adapter: ChatProvider, fake: FakeServer) -> None:
    received: list[StreamEvent] = []
    reader = asyncio.create_task(
        drain(adapter.stream(chat("[[tokens=200 delay_ms=10]]")), received)
    )
    async with asyncio.timeout(2):
        while not any(isinstance(e, str) for e in received):
            await asyncio.sleep(0.005)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader

    call = await fake.wait_for_call_status("disconnected", timeout=2)
    assert call.tokens_sent < 200
