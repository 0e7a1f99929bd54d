"""What each adapter puts on its provider's wire for OpenAI's request fields: tool choice,
parallel calls, stop sequences, sampling, JSON formats and images, each in the provider's own
names (read back from the fake's call log), and the answers read back in OpenAI's terms."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lipika.providers.base import (
    ChatProvider,
    ChatRequest,
    Finish,
    Image,
    Message,
    ResponseFormat,
    Tool,
    ToolCallDelta,
    ToolChoice,
)
from tests.fixtures.fakes.server import FakeServer

WEATHER = Tool("get_weather", "The weather", {"type": "object", "properties": {}})
TIME = Tool("get_time", "The time", {"type": "object", "properties": {}})
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}
PNG = "data:image/png;base64,iVBORw0KGgo="


def ask(text: str, **fields) -> ChatRequest:
    return ChatRequest("test-model", [Message("user", text)], 100, **fields)


async def test_tool_choice_and_parallel_calls_in_each_protocol(
    name: str, adapter: ChatProvider, fake: FakeServer
) -> None:
    request = ask(
        "Which? [[tool=get_weather,get_time]]",
        tools=(WEATHER, TIME),
        tool_choice=ToolChoice("tool", "get_time"),
        parallel_tool_calls=False,
    )
    result = await adapter.complete(request)
    assert [c.name for c in result.tool_calls] == ["get_time"]
    assert result.finish_reason == "tool_calls"
    body = fake.last_call.body
    sent = {
        "openai": lambda: (body["tool_choice"], body["parallel_tool_calls"]),
        "xai": lambda: (body["tool_choice"], body["parallel_tool_calls"]),
        "anthropic": lambda: body["tool_choice"],
        "gemini": lambda: body["toolConfig"]["functionCallingConfig"],
    }[name]()
    assert (
        sent
        == {
            "openai": ({"type": "function", "function": {"name": "get_time"}}, False),
            "xai": ({"type": "function", "function": {"name": "get_time"}}, False),
            "anthropic": {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
            "gemini": {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        }[name]
    )


async def test_parallel_calls_stream_as_indexed_deltas(
    adapter: ChatProvider, fake: FakeServer
) -> None:
    request = ask('Both [[tool=get_weather,get_time args={"a":1}]]', tools=(WEATHER, TIME))
    events = [e async for e in adapter.stream(request)]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert [(d.index, d.name) for d in deltas if d.id] == [(0, "get_weather"), (1, "get_time")]
    for index, call in enumerate(finish.tool_calls):
        joined = "".join(d.arguments for d in deltas if d.index == index)
        assert joined.replace(" ", "") == '{"a":1}' and call.arguments == {"a": 1}
        assert [d.id for d in deltas if d.index == index and d.id] == [call.id]


async def test_stop_sequences_and_sampling_fields(
    name: str, adapters: Callable[..., ChatProvider], fake: FakeServer
) -> None:
    fields = {"stop": ("w3",)}
    if name != "anthropic":  # Anthropic's API version takes no sampling fields
        fields |= {"temperature": 0.2, "top_p": 0.9, "seed": 11}
    result = await adapters(name).complete(ask("Count [[tokens=6]]", **fields))
    assert (result.text, result.finish_reason) == ("w1 w2", "stop")
    body = fake.last_call.body
    if name == "gemini":
        config = body["generationConfig"]
        assert (config["stopSequences"], config["topP"], config["seed"]) == (["w3"], 0.9, 11)
    elif name == "anthropic":
        assert body["stop_sequences"] == ["w3"]
        assert not {"temperature", "top_p", "top_k"} & set(body)
    else:
        assert (body["stop"], body["top_p"], body["seed"]) == (["w3"], 0.9, 11)


@pytest.mark.parametrize("kind", ["json_object", "json_schema"])
async def test_json_formats(kind: str, name: str, adapter: ChatProvider, fake: FakeServer) -> None:
    if kind == "json_object" and name == "anthropic":
        pytest.skip("Anthropic has no schema-less JSON mode (not declared)")
    fmt = ResponseFormat(kind, SCHEMA if kind == "json_schema" else None, "person", True)
    result = await adapter.complete(ask("Answer in JSON [[tokens=2]]", response_format=fmt))
    assert result.text == ('{"name":"demo"}' if kind == "json_schema" else '{"answer":"w1 w2"}')
    body = fake.last_call.body
    if name == "anthropic":
        assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    elif name == "gemini":
        assert body["generationConfig"]["responseMimeType"] == "application/json"
    elif kind == "json_schema":
        assert body["response_format"]["json_schema"] == {
            "name": "person",
            "schema": SCHEMA,
            "strict": True,
        }


async def test_images_in_each_protocol(name: str, adapter: ChatProvider, fake: FakeServer) -> None:
    images = (Image(PNG),) if name == "gemini" else (Image(PNG), Image("https://example.com/a.png"))
    message = Message("user", "Look [[tokens=1]]", images=images)
    await adapter.complete(ChatRequest("test-model", [message], 10))
    call = fake.last_call
    assert call.input_tokens == len("Look [[tokens=1]]".split()) + 3 + 85 * len(images)
    content = {
        "openai": lambda: call.body["messages"][0]["content"],
        "xai": lambda: call.body["messages"][0]["content"],
        "anthropic": lambda: call.body["messages"][0]["content"],
        "gemini": lambda: call.body["contents"][0]["parts"],
    }[name]()
    assert len(content) == 1 + len(images)
    assert "iVBORw0KGgo=" in str(content)
