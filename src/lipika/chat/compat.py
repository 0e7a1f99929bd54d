"""OpenAI's chat completion request, read honestly: every field is passed to the provider,
refused with a 400 that names it, or (OpenAI's metadata fields only) ignored; none is dropped.

What each provider honours is its adapter's declaration (`ChatProvider.features`, keys of
`providers.chat.FEATURES`); the README's table of it is held to the code by a test.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from lipika.chat.errors import InvalidParameter, UnknownParameter, UnsupportedParameter
from lipika.chat.schemas import ChatCompletionRequest, ChatMessageIn
from lipika.providers.base import (
    FEATURES,
    ChatProvider,
    ChatRequest,
    Image,
    Message,
    ProviderError,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
    parse_arguments,
)

# OpenAI's fields that say something about the caller, not the answer: accepted, not used.
IGNORED = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
# OpenAI's fields this API does not serve, with the value that asks nothing of them (sent by
# clients that fill in defaults): any other value is refused.
NOT_SERVED: dict[str, Any] = {
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logit_bias": {},
    "modalities": ["text"],
    "audio": None,
    "prediction": None,
    "reasoning_effort": None,
    "verbosity": None,
    "web_search_options": None,
    "functions": None,
    "function_call": None,
}
_DATA_URL = re.compile(r"data:(image/(?:png|jpeg|gif|webp));base64,([A-Za-z0-9+/=\s]*)", re.S)


def chat_request(
    body: ChatCompletionRequest, provider: ChatProvider, max_output_tokens: int
) -> ChatRequest:
    """The provider's request for `body`; refuses what `provider` cannot honour."""
    check_extra_fields(body)
    request = ChatRequest(
        model=body.model,
        messages=messages(body.messages),
        max_output_tokens=max_output_tokens,
        temperature=body.temperature,
        tools=tuple(
            Tool(
                t.function.name,
                t.function.description or "",
                t.function.parameters or {"type": "object", "properties": {}},
            )
            for t in body.tools or ()
        ),
        tool_choice=tool_choice(body),
        parallel_tool_calls=body.parallel_tool_calls,
        stop=(body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ()),
        top_p=body.top_p,
        seed=body.seed,
        response_format=response_format(body),
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs,
    )
    for feature, param in features_used(body):
        if feature not in provider.features:
            raise UnsupportedParameter(
                f"{provider.name} does not support {FEATURES[feature]}; remove `{param}`, or "
                f"use a model of a provider that does (see GET /v1/models)",
                param=param,
                provider=provider.name,
                model=body.model,
            )
    return request


def check_extra_fields(body: ChatCompletionRequest) -> None:
    for name, value in (body.model_extra or {}).items():
        if name in IGNORED:
            continue
        if name in NOT_SERVED:
            if value is None or value == NOT_SERVED[name]:
                continue
            raise UnsupportedParameter(
                f"`{name}` is not supported by this API", param=name, model=body.model
            )
        raise UnknownParameter(f"unrecognized request argument: `{name}`", param=name)


def features_used(body: ChatCompletionRequest) -> Iterator[tuple[str, str]]:
    """(feature, the field that asks for it) for each feature the request uses."""
    if body.tools:
        yield "tools", "tools"
    if body.tool_choice is not None and body.tool_choice != "auto":
        yield "tool_choice", "tool_choice"
    if body.parallel_tool_calls is False:
        yield "parallel_tool_calls", "parallel_tool_calls"
    if body.stop:
        yield "stop", "stop"
    for name in ("temperature", "top_p", "seed"):
        if getattr(body, name) is not None:
            yield name, name
    if body.response_format and body.response_format.type != "text":
        yield body.response_format.type, "response_format"
    if body.logprobs or body.top_logprobs is not None:
        yield "logprobs", "logprobs" if body.logprobs else "top_logprobs"
    for i, m in enumerate(body.messages):
        for j, part in enumerate(m.content if isinstance(m.content, list) else ()):
            if part.type == "image_url" and part.image_url is not None:
                kind = "image_data" if part.image_url.url.startswith("data:") else "image_url"
                yield kind, f"messages[{i}].content[{j}].image_url"


def messages(given: list[ChatMessageIn]) -> list[Message]:
    """The conversation: a developer message is a system one; an assistant's tool calls and
    the tool messages that answer them keep their ids (and the tool's name, for Gemini)."""
    result: list[Message] = []
    names: dict[str, str] = {}  # call id -> tool name
    for i, m in enumerate(given):
        role = "system" if m.role == "developer" else m.role
        images = tuple(_images(i, m))
        calls = tuple(_calls(i, m))
        names.update((c.id, c.name) for c in calls)
        if role == "tool":
            call_id = m.tool_call_id
            name = names.get(call_id or "")
            result.append(Message("tool", m.text(), tool_call_id=call_id, name=name))
        else:
            result.append(Message(role, m.text(), tool_calls=calls, images=images))
    return result


def _images(i: int, message: ChatMessageIn) -> Iterator[Image]:
    for j, part in enumerate(message.content if isinstance(message.content, list) else ()):
        param = f"messages[{i}].content[{j}]"
        if part.type == "text" or (part.type == "refusal" and message.role == "assistant"):
            continue  # an assistant's earlier refusal is history, not input
        if part.type != "image_url":
            raise UnsupportedParameter(
                f"content parts of type {part.type!r} are not supported", param=f"{param}.type"
            )
        if part.image_url is None:
            raise InvalidParameter("an image_url part needs its image_url", param=param)
        if message.role != "user":
            raise InvalidParameter("only user messages may hold images", param=param)
        yield _image(part.image_url.url, f"{param}.image_url.url")


def _image(url: str, param: str) -> Image:
    if url.startswith(("https://", "http://")):
        return Image(url)
    found = _DATA_URL.fullmatch(url)
    if found is None:
        raise InvalidParameter(
            "an image URL must be http(s) or a base64 data URL of a PNG, JPEG, GIF or WebP "
            "image (data:image/png;base64,...)",
            param=param,
        )
    try:
        base64.b64decode(found[2], validate=False)
    except (binascii.Error, ValueError):
        raise InvalidParameter("the data URL's base64 is malformed", param=param) from None
    return Image(f"data:{found[1]};base64,{''.join(found[2].split())}")


def _calls(i: int, message: ChatMessageIn) -> Iterator[ToolCall]:
    for k, call in enumerate(message.tool_calls or ()):
        try:
            arguments = parse_arguments("the request", call.function.name, call.function.arguments)
        except ProviderError as exc:
            raise InvalidParameter(
                str(exc), param=f"messages[{i}].tool_calls[{k}].function.arguments"
            ) from None
        yield ToolCall(call.id, call.function.name, arguments)


def tool_choice(body: ChatCompletionRequest) -> ToolChoice | None:
    choice = body.tool_choice
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice != "none" and not body.tools:
            raise InvalidParameter(f"tool_choice {choice!r} needs tools", param="tool_choice")
        return ToolChoice(choice)
    declared = {t.function.name for t in body.tools or ()}
    if choice.function.name not in declared:
        raise InvalidParameter(
            f"tool_choice names {choice.function.name!r}, which is not in `tools`",
            param="tool_choice",
        )
    return ToolChoice("tool", choice.function.name)


def response_format(body: ChatCompletionRequest) -> ResponseFormat | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object" or fmt.json_schema is None:
        return ResponseFormat("json_object")
    schema = fmt.json_schema
    return ResponseFormat("json_schema", schema.schema_ or {}, schema.name, schema.strict)
