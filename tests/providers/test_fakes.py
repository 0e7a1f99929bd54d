"""The fakes' own contract, through the official SDKs: tool calls in each protocol's shape,
streamed and not, answered once a tool result follows; directives they cannot follow are 400s."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from lipika.providers.gemini import GeminiProvider
from tests.fixtures.fakes.fixtures import FakeProviders

ASK = 'Weather? [[tool=get_weather args={"city":"Paris","days":2}]]'
ARGS = {"city": "Paris", "days": 2}


@pytest.fixture(scope="module")
async def openai_client(fake_providers: FakeProviders) -> AsyncIterator[openai.AsyncOpenAI]:
    fake = fake_providers.openai
    async with openai.AsyncOpenAI(
        api_key=fake.api_key, base_url=fake.base_url, max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def anthropic_client(
    fake_providers: FakeProviders,
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    fake = fake_providers.anthropic
    async with anthropic.AsyncAnthropic(
        api_key=fake.api_key, base_url=fake.base_url, max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def gemini_client(fake_providers: FakeProviders) -> AsyncIterator[genai.client.AsyncClient]:
    fake = fake_providers.gemini
    provider = GeminiProvider(fake.api_key, fake.base_url, timeout=5.0, max_retries=0)
    yield provider.client  # the SDK's client, as the adapter configures it
    await provider.aclose()


async def test_openai_tool_call(openai_client: openai.AsyncOpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}},
        }
    ]
    messages: list = [{"role": "user", "content": ASK}]

    answer = await openai_client.chat.completions.create(model="m", messages=messages, tools=tools)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == ARGS

    arguments, finish = "", None
    stream = await openai_client.chat.completions.create(
        model="m", messages=messages, tools=tools, stream=True
    )
    async for chunk in stream:
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            arguments += delta_call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert json.loads(arguments) == ARGS and finish == "tool_calls"

    messages += [
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    answer = await openai_client.chat.completions.create(model="m", messages=messages, tools=tools)
    assert answer.choices[0].message.content == "The tool returned: Sunny, 21 C"


async def test_anthropic_tool_call(anthropic_client: anthropic.AsyncAnthropic) -> None:
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    messages: list = [{"role": "user", "content": ASK}]

    answer = await anthropic_client.messages.create(
        model="m", max_tokens=100, messages=messages, tools=tools
    )
    assert answer.stop_reason == "tool_use"
    block = answer.content[0]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == ARGS

    # The SDK's stream helper rebuilds the tool input from the input_json_delta fragments.
    async with anthropic_client.messages.stream(
        model="m", max_tokens=100, messages=messages, tools=tools
    ) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].input == ARGS and streamed.stop_reason == "tool_use"

    messages += [
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "Sunny"}],
        },
    ]
    answer = await anthropic_client.messages.create(
        model="m", max_tokens=100, messages=messages, tools=tools
    )
    assert answer.content[0].text == "The tool returned: Sunny"


async def test_gemini_tool_call(gemini_client: genai.client.AsyncClient) -> None:
    declaration = types.FunctionDeclaration(name="get_weather", parameters={"type": "OBJECT"})
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[declaration])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    contents: list = [types.Content(role="user", parts=[types.Part(text=ASK)])]

    answer = await gemini_client.models.generate_content(
        model="m", contents=contents, config=config
    )
    call = answer.function_calls[0]
    assert call.name == "get_weather" and call.args == ARGS

    stream = await gemini_client.models.generate_content_stream(
        model="m", contents=contents, config=config
    )
    streamed = [c.function_calls[0] async for c in stream if c.function_calls]
    assert [(c.name, c.args) for c in streamed] == [("get_weather", ARGS)]

    contents += [
        answer.candidates[0].content,
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name="get_weather", response={"output": "Sunny"})
            ],
        ),
    ]
    answer = await gemini_client.models.generate_content(
        model="m", contents=contents, config=config
    )
    assert answer.text == "The tool returned: Sunny"


async def test_directives_it_cannot_follow_are_bad_requests(
    openai_client: openai.AsyncOpenAI, fake_providers: FakeProviders
) -> None:
    for text, message in [
        ("[[tokens=x]]", "tokens must be a non-negative integer"),
        ("[[colour=red]]", "unknown directive key 'colour'"),
        ("[[fail=meteor]]", "directive fail must be one of"),
        ("[[tool=get_weather]]", "tool 'get_weather' is not declared"),
    ]:
        with pytest.raises(openai.BadRequestError) as raised:
            await openai_client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": text}]
            )
        assert message in str(raised.value)
    assert fake_providers.openai.last_call.http_status == 400


async def test_the_fakes_refuse_what_their_providers_refuse(
    openai_client: openai.AsyncOpenAI, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'"):
        await openai_client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Hi"}],
            response_format={"type": "json_object"},
        )
    with pytest.raises(openai.BadRequestError, match="not found in 'tools'"):
        await openai_client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Hi"}],
            tools=[{"type": "function", "function": {"name": "a", "parameters": {}}}],
            tool_choice={"type": "function", "function": {"name": "b"}},
        )
    with pytest.raises(anthropic.BadRequestError, match="temperature"):  # API 2026-10-21
        await anthropic_client.messages.create(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": "Hi"}],
            extra_body={"temperature": 0.5},  # the SDK itself no longer takes it
        )
    with pytest.raises(anthropic.BadRequestError, match="media_type"):
        image = {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/bmp", "data": ""},
        }
        await anthropic_client.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": [image]}]
        )
