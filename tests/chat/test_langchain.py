"""LangChain's `ChatOpenAI` pointed at the platform, against each provider's fake and the demo
model: `bind_tools` gets tool calls back, streamed and not, and `with_structured_output` gives
the schema's object, by JSON schema and by a forced tool call."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash-lite",
    "xai": "grok-3-mini",
    "demo": "demo",
}
ASK = 'Weather in Lima? get_weather [[tool=get_weather args={"city":"Lima"}]]'


class get_weather(BaseModel):  # noqa: N801 - the tool's name, as the model sees it
    """The weather in a city."""

    city: str = Field(description="the city")


class City(BaseModel):
    """A city."""

    name: str
    population: int


def chat_model(url: str, api_key: str, model: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        base_url=f"{url}/v1",
        api_key=api_key,
        max_retries=0,
        use_responses_api=False,
        stream_usage=True,
    )


pytestmark = pytest.mark.parametrize("provider", list(MODELS))


async def test_bind_tools_gets_tool_calls(provider: str, provider_live_url, api_key) -> None:
    llm = chat_model(provider_live_url, api_key, MODELS[provider]).bind_tools([get_weather])
    city = "demo" if provider == "demo" else "Lima"

    answer = await llm.ainvoke([HumanMessage(ASK)])
    [call] = answer.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": city}) and call["id"]
    assert answer.usage_metadata["input_tokens"] > 0

    streamed: AIMessageChunk | None = None
    async for chunk in llm.astream([HumanMessage(ASK)]):
        streamed = chunk if streamed is None else streamed + chunk
    [call] = streamed.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": city})
    assert streamed.usage_metadata["output_tokens"] > 0

    final = await llm.ainvoke(
        [
            HumanMessage(ASK),
            answer,
            ToolMessage("Rain, 14 C", tool_call_id=answer.tool_calls[0]["id"]),
        ]
    )
    assert final.content.endswith("returned: Rain, 14 C") and not final.tool_calls


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
async def test_with_structured_output_gives_the_schemas_object(
    provider: str, method: str, provider_live_url, api_key
) -> None:
    llm = chat_model(provider_live_url, api_key, MODELS[provider])
    structured = llm.with_structured_output(City, method=method)
    city = await structured.ainvoke("The largest city of Peru?")
    assert city == City(name="demo", population=0)
