"""OpenAI compatibility, honestly: the official `openai` SDK pointed at the platform, which
passes tools, tool choice, parallel calls, JSON modes, stop sequences, sampling fields and
images to each provider's fake in its own protocol, or refuses them with a 400 naming the field
and the provider; the ledger is checked after each answer."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

import openai
import pytest
from pydantic import BaseModel

from lipika.billing.pricebook import PriceBook
from tests.fixtures.fakes.scenario import FakeCall

MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash-lite",
    "xai": "grok-3-mini",
    "demo": "demo",
}
PRICES = PriceBook.load()
FREE_MONTHLY = 100_000_000
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK_WEATHER = 'Weather in Paris? get_weather [[tool=get_weather args={"city":"Paris"}]]'
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
DATA_URL = f"data:image/png;base64,{PIXEL}"


class City(BaseModel):
    name: str
    population: int


@pytest.fixture
async def sdk(provider_live_url: str, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{provider_live_url}/v1", api_key=api_key, max_retries=0
    ) as client:
        yield client


def fake_of(fake_providers, provider: str):
    return None if provider == "demo" else fake_providers[provider]


def charge_of(provider: str, call: FakeCall) -> int:
    return PRICES.get(MODELS[provider]).cost(
        {
            "input_tokens": call.input_tokens - call.cached_tokens,
            "cached_input_tokens": call.cached_tokens,
            "output_tokens": call.output_tokens,
        }
    )


async def balance_of(client, api_key: str) -> dict:
    headers = {"authorization": f"Bearer {api_key}"}
    return (await client.get("/v1/billing/balance", headers=headers)).json()


# -- tools -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(MODELS))
async def test_tool_calls_come_back_in_openais_shape_and_are_charged(
    provider: str, sdk: openai.AsyncOpenAI, fake_providers, client, api_key, books
) -> None:
    fake = fake_of(fake_providers, provider)
    messages: list = [{"role": "user", "content": ASK_WEATHER}]
    completion = await sdk.chat.completions.create(
        model=MODELS[provider], messages=messages, tools=[WEATHER, TIME]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    expected = {"city": "Paris"} if fake else {"city": "demo"}
    assert json.loads(call.function.arguments) == expected
    charged = completion.usage.model_extra["credits_charged"]
    if fake:
        assert fake.last_call.body["tools"]  # declared in the provider's own shape
        assert charged == charge_of(provider, fake.last_call) > 0

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    answer = await sdk.chat.completions.create(
        model=MODELS[provider], messages=messages, tools=[WEATHER, TIME]
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content.endswith("returned: Sunny, 21 C")
    total = charged + answer.usage.model_extra["credits_charged"]
    balance = await balance_of(client, api_key)
    assert (balance["balance"], balance["held"]) == (FREE_MONTHLY - total, 0)
    await books.assert_balanced()


@pytest.mark.parametrize("provider", list(MODELS))
async def test_streamed_parallel_tool_calls_arrive_as_openai_deltas(
    provider: str, sdk: openai.AsyncOpenAI, fake_providers, client, api_key, books
) -> None:
    content = (
        'Weather and time? get_weather get_time [[tool=get_weather,get_time args={"city":"Oslo"}]]'
    )
    stream = await sdk.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": content}],
        tools=[WEATHER, TIME],
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict] = {}
    finish, usage, firsts = None, None, []
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            if delta.id:
                firsts.append(delta.index)
                assert delta.type == "function" and delta.function.name
                calls[delta.index] = {"id": delta.id, "name": delta.function.name, "args": ""}
            calls[delta.index]["args"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and firsts == [0, 1]
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    city = "demo" if provider == "demo" else "Oslo"
    assert all(json.loads(c["args"]) == {"city": city} for c in calls.values())
    assert len({c["id"] for c in calls.values()}) == 2
    balance = await balance_of(client, api_key)
    assert balance["balance"] == FREE_MONTHLY - usage.model_extra["credits_charged"]
    assert usage.model_extra["credits_charged"] > 0 and balance["held"] == 0
    await books.assert_balanced()


@pytest.mark.parametrize("provider", list(MODELS))
async def test_tool_choice_is_passed_on(provider: str, sdk: openai.AsyncOpenAI) -> None:
    model, tools = MODELS[provider], [WEATHER, TIME]
    forced = await sdk.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What now? [[tokens=3]]"}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert [c.function.name for c in forced.choices[0].message.tool_calls] == ["get_time"]
    refused = await sdk.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": ASK_WEATHER}],
        tools=tools,
        tool_choice="none",
    )
    assert refused.choices[0].message.tool_calls is None
    assert refused.choices[0].message.content


@pytest.mark.parametrize("provider", list(MODELS))
async def test_parallel_tool_calls_can_be_turned_off(
    provider: str, sdk: openai.AsyncOpenAI, fake_providers
) -> None:
    content = "get_weather get_time [[tool=get_weather,get_time]]"
    request = {
        "model": MODELS[provider],
        "messages": [{"role": "user", "content": content}],
        "tools": [WEATHER, TIME],
        "parallel_tool_calls": False,
    }
    completion = await sdk.chat.completions.create(**request)
    assert [c.function.name for c in completion.choices[0].message.tool_calls] == ["get_weather"]
    streamed = []
    async for chunk in await sdk.chat.completions.create(**request, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls if chunk.choices else None) or []:
            streamed += [delta.function.name] if delta.id else []
    assert streamed == ["get_weather"]
    if provider == "gemini":  # Gemini has no switch: it called both, the adapter kept one
        assert len(fake_providers.gemini.last_call.tool_calls) == 2


# -- response formats, stop, sampling, log probabilities -------------------------------------


@pytest.mark.parametrize("provider", list(MODELS))
async def test_structured_output_parses_into_the_schema(
    provider: str, sdk: openai.AsyncOpenAI, fake_providers
) -> None:
    completion = await sdk.chat.completions.parse(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "The largest city of Norway?"}],
        response_format=City,
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == City(name="demo", population=0)
    if fake := fake_of(fake_providers, provider):
        assert fake.last_call.status == "completed"


@pytest.mark.parametrize("provider", ["openai", "gemini", "xai", "demo"])
async def test_json_mode_answers_a_json_object(provider: str, sdk: openai.AsyncOpenAI) -> None:
    request = {
        "model": MODELS[provider],
        "messages": [{"role": "user", "content": "Answer in JSON [[tokens=4]]"}],
        "response_format": {"type": "json_object"},
    }
    text = (await sdk.chat.completions.create(**request)).choices[0].message.content
    assert isinstance(json.loads(text)["answer"], str)
    streamed = ""
    async for chunk in await sdk.chat.completions.create(**request, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            streamed += chunk.choices[0].delta.content
    assert streamed == text


@pytest.mark.parametrize("provider", list(MODELS))
async def test_stop_sequences_end_the_answer(
    provider: str, sdk: openai.AsyncOpenAI, fake_providers
) -> None:
    fake = fake_of(fake_providers, provider)
    request = {
        "model": MODELS[provider],
        "messages": [{"role": "user", "content": "Count [[tokens=8]]"}],
    }
    whole = (await sdk.chat.completions.create(**request)).choices[0].message.content
    stop = whole.split()[2]  # the third word
    completion = await sdk.chat.completions.create(**request, stop=[stop])
    text = completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert text == " ".join(whole.split()[:2]) and stop not in text
    if fake:
        assert text == "w1 w2"


@pytest.mark.parametrize("provider", ["openai", "gemini", "xai"])
async def test_sampling_fields_reach_the_provider(
    provider: str, sdk: openai.AsyncOpenAI, fake_providers
) -> None:
    await sdk.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "Hi [[tokens=2]]"}],
        temperature=0.3,
        top_p=0.5,
        seed=7,
    )
    body = fake_providers[provider].last_call.body
    sent = body.get("generationConfig", body)
    assert (sent["temperature"], sent.get("top_p", sent.get("topP")), sent["seed"]) == (
        0.3,
        0.5,
        7,
    )


@pytest.mark.parametrize("provider", ["openai", "gemini", "xai"])
async def test_logprobs_come_back_streamed_and_not(provider: str, sdk: openai.AsyncOpenAI) -> None:
    request = {
        "model": MODELS[provider],
        "messages": [{"role": "user", "content": "Hi [[tokens=3]]"}],
        "logprobs": True,
        "top_logprobs": 1,
    }
    completion = await sdk.chat.completions.create(**request)
    tokens = [t.token for t in completion.choices[0].logprobs.content]
    assert tokens == ["w1", " w2", " w3"]
    assert [len(t.top_logprobs) for t in completion.choices[0].logprobs.content] == [1, 1, 1]
    streamed = []
    async for chunk in await sdk.chat.completions.create(**request, stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed += [t.token for t in chunk.choices[0].logprobs.content]
    assert streamed == tokens


# -- images ------------------------------------------------------------------------------


def image_message(url: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this? [[tokens=2]]"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "xai"])
async def test_a_data_url_image_reaches_the_provider(
    provider: str, sdk: openai.AsyncOpenAI, fake_providers
) -> None:
    fake = fake_providers[provider]
    completion = await sdk.chat.completions.create(
        model=MODELS[provider], messages=image_message(DATA_URL)
    )
    call = fake.last_call
    assert completion.usage.prompt_tokens == call.input_tokens
    assert call.input_tokens >= 85  # the fakes count an image as 85 tokens
    assert PIXEL in json.dumps(call.body)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "xai"])
async def test_an_image_url_reaches_the_provider(
    provider: str, sdk: openai.AsyncOpenAI, fake_providers
) -> None:
    url = "https://example.com/cat.png"
    await sdk.chat.completions.create(model=MODELS[provider], messages=image_message(url))
    assert url in json.dumps(fake_providers[provider].last_call.body)


# -- refusals ----------------------------------------------------------------------------

UNSUPPORTED = [
    ("anthropic", {"temperature": 0.5}, "temperature"),
    ("anthropic", {"top_p": 0.5}, "top_p"),
    ("anthropic", {"seed": 1}, "seed"),
    ("anthropic", {"response_format": {"type": "json_object"}}, "response_format"),
    ("anthropic", {"logprobs": True}, "logprobs"),
    (
        "gemini",
        {"messages": image_message("https://example.com/cat.png")},
        "messages[0].content[1].image_url",
    ),
    ("demo", {"logprobs": True}, "logprobs"),
]


@pytest.mark.parametrize(("provider", "fields", "param"), UNSUPPORTED)
async def test_a_field_the_provider_cannot_honour_is_refused_by_name(
    provider: str, fields: dict, param: str, provider_client, signup, fake_providers, books
) -> None:
    account = await signup()
    fake_providers.reset()
    body = {"model": MODELS[provider], "messages": [{"role": "user", "content": "Hi"}], **fields}
    response = await provider_client.post(
        "/v1/chat/completions", json=body, headers=account.headers
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", param)
    assert error["details"]["provider"] == provider and provider in error["message"]
    assert response.headers["x-should-retry"] == "false"
    assert all(not fake.calls for fake in fake_providers)
    assert await books.holds(uuid.UUID(account.personal_workspace_id)) == []


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"frobnicate": 1}, "unknown_parameter", "frobnicate"),
        ({"frequency_penalty": 0.5}, "unsupported_parameter", "frequency_penalty"),
        ({"functions": [{"name": "f"}]}, "unsupported_parameter", "functions"),
        (
            {"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": [WEATHER]},
            "invalid_parameter",
            "tool_choice",
        ),
        (
            {"messages": image_message("ftp://example.com/x.png")},
            "invalid_parameter",
            "messages[0].content[1].image_url.url",
        ),
        (
            {"messages": image_message("data:image/png;base64,@@@")},
            "invalid_parameter",
            "messages[0].content[1].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "unsupported_parameter",
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "[1]"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c", "content": "x"},
                ]
            },
            "invalid_parameter",
            "messages[1].tool_calls[0].function.arguments",
        ),
    ],
)
async def test_fields_that_cannot_be_used_are_refused_by_name(
    fields: dict, code: str, param: str, client, signup
) -> None:
    account = await signup()
    body = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}], **fields}
    response = await client.post("/v1/chat/completions", json=body, headers=account.headers)
    assert response.status_code == 400, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, param)


async def test_openais_metadata_fields_and_no_op_defaults_are_accepted(client, signup) -> None:
    account = await signup()
    body = {
        "model": "demo",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 3,
        "user": "end-user-1",
        "metadata": {"k": "v"},
        "store": False,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "logit_bias": {},
        "response_format": {"type": "text"},
        "tool_choice": "none",
    }
    response = await client.post("/v1/chat/completions", json=body, headers=account.headers)
    assert response.status_code == 200, response.text
