"""Anthropic Messages through the official SDK, over its aiohttp transport.

Usage arrives twice in a stream: input and cache counts in `message_start`, cumulative output
in each `message_delta`. Anthropic's `input_tokens` leave out cache reads and cache writes; the
ledger's input includes both, cache reads as cached input and cache writes at the plain input
rate. A stream ends with `message_stop`; a failure mid-stream is an `event: error`.

A tool call is a `tool_use` content block; streamed, its input arrives as fragments of JSON
text (`input_json_delta`), joined and parsed once the stream ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
from orjson import JSONDecodeError, loads

from lipika.providers.base import (
    STATUS_ERRORS,
    ChatRequest,
    ChatResult,
    Finish,
    FinishReason,
    Image,
    Message,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    SDKClientProvider,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
    retry_hint,
    turns,
)
from lipika.providers.transport import data_lines, timed_out

_FINISH: dict[str | None, FinishReason] = {
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}
_BY_STATUS = {**STATUS_ERRORS, 413: ProviderRejected}
_BY_TYPE: dict[str | None, type[ProviderError]] = {
    "rate_limit_error": ProviderRateLimited,
    "overloaded_error": ProviderOverloaded,
}


class AnthropicProvider(SDKClientProvider[anthropic.AsyncAnthropic]):
    name = "anthropic"
    # No sampling knobs (the API version refuses temperature and top_p; there is no seed),
    # no JSON mode without a schema, no log probabilities.
    features = frozenset(
        {"tools", "tool_choice", "parallel_tool_calls", "stop", "json_schema"}
        | {"image_data", "image_url"}
    )

    def __init__(
        self, api_key: str | None, base_url: str | None, *, timeout: float, max_retries: int
    ) -> None:
        super().__init__(
            anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                # httpx's connection pool costs CPU quadratic in the number of open streams.
                http_client=anthropic.DefaultAioHttpClient(),
            )
            if api_key
            else None
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        try:
            message = await self.client.messages.create(**params(request))
        except anthropic.APIError as exc:
            raise self.error(exc) from exc
        u = message.usage
        cache_read = u.cache_read_input_tokens or 0
        input_tokens = u.input_tokens + cache_read + (u.cache_creation_input_tokens or 0)
        return ChatResult(
            text="".join(block.text for block in message.content if block.type == "text"),
            usage=Usage(input_tokens, u.output_tokens, cache_read),
            finish_reason=_FINISH.get(message.stop_reason, "stop"),
            provider_request_id=message.id,
            tool_calls=tuple(
                ToolCall(block.id, block.name, dict(block.input))
                for block in message.content
                if block.type == "tool_use"
            ),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Reads the server-sent events itself: the SDK's typed events cost a model
        construction per token. The SDK still sends the request, retries it and maps an error
        status to its exceptions before the body is read. Events are told apart by their
        `type`, which repeats the `event:` name."""
        uncached = cache_read = cache_write = output = 0
        stop_reason: str | None = None
        stopped = False
        calls: dict[int, list[str]] = {}  # block index -> [id, name, input JSON so far]
        order: dict[int, int] = {}  # block index -> the call's index among the calls
        try:
            async with self.client.messages.with_streaming_response.create(
                **params(request), stream=True
            ) as response:
                async for line in data_lines(response.http_response):
                    event = loads(line)  # each event's type is in its data too
                    kind = event["type"]
                    if kind == "content_block_delta":
                        delta = event["delta"]
                        if delta["type"] == "text_delta":
                            yield delta["text"]
                        elif delta["type"] == "input_json_delta":
                            call = calls[event["index"]]
                            call[2] += delta["partial_json"]
                            if delta["partial_json"]:
                                yield ToolCallDelta(
                                    order[event["index"]], None, None, delta["partial_json"]
                                )
                        continue
                    if kind == "message_start":
                        usage = event["message"]["usage"]
                        uncached, output = usage["input_tokens"], usage["output_tokens"]
                        cache_read = usage.get("cache_read_input_tokens") or 0
                        cache_write = usage.get("cache_creation_input_tokens") or 0
                    elif kind == "message_delta":
                        usage = event["usage"]  # cumulative; input counts only when repeated
                        output = usage["output_tokens"]
                        uncached = usage.get("input_tokens") or uncached
                        cache_read = usage.get("cache_read_input_tokens") or cache_read
                        cache_write = usage.get("cache_creation_input_tokens") or cache_write
                        stop_reason = event["delta"].get("stop_reason") or stop_reason
                    elif kind == "message_stop":
                        stopped = True
                        continue
                    elif kind == "content_block_start":
                        block = event["content_block"]
                        if block["type"] == "tool_use":
                            calls[event["index"]] = [block["id"], block["name"], ""]
                            order[event["index"]] = len(order)
                            yield ToolCallDelta(len(order) - 1, block["id"], block["name"], "")
                        continue
                    elif kind == "error":
                        raise self.stream_error(event.get("error") or {})
                    else:
                        continue  # ping, content_block_stop
                    yield Usage(uncached + cache_read + cache_write, output, cache_read)
        except (anthropic.APIError, httpx2.HTTPError) as exc:  # httpx2's come raw from the body
            raise self.error(exc) from exc
        except JSONDecodeError as exc:
            raise ProviderError(f"{self.name}: a malformed event: {exc}") from exc
        if not stopped:
            raise ProviderError(f"{self.name}: the stream ended before message_stop")
        tool_calls = tuple(self.tool_call(*call) for call in calls.values())  # in block order
        yield Finish(_FINISH.get(stop_reason, "stop"), tool_calls)

    def error(self, exc: anthropic.APIError | httpx2.HTTPError) -> ProviderError:
        """The `ProviderError` for an SDK or transport error, before the stream or during it."""
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException) and timed_out(exc):
            return ProviderTimeout(f"{self.name}: the request timed out")
        if isinstance(exc, anthropic.APIConnectionError | httpx2.HTTPError):
            return ProviderError(f"{self.name}: connection failed: {exc.__cause__ or exc}")
        if isinstance(exc, anthropic.APIStatusError):
            message = exc.api_message or exc.message
            error = _BY_STATUS.get(exc.status_code, ProviderError)
            return error(
                f"{self.name} answered {exc.status_code}: {message}",
                retry_after=retry_hint(exc.response.headers),
            )
        return ProviderError(f"{self.name}: {exc.message}")

    def stream_error(self, error: dict[str, Any]) -> ProviderError:
        """An `event: error` inside the 200 stream: a plain ProviderError unless its type says
        the provider was busy."""
        kind = error.get("type")
        return _BY_TYPE.get(kind, ProviderError)(f"{self.name}: {kind}: {error.get('message')}")


def params(request: ChatRequest) -> dict[str, Any]:
    """System messages go in `system`; see `messages` for the rest.

    No temperature: the API version this SDK sends (2026-10-21) no longer accepts one.
    """
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    result: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_output_tokens,
        "messages": messages(request.messages),
    }
    if system:
        result["system"] = system
    if request.stop:
        result["stop_sequences"] = list(request.stop)
    if request.tools:
        result["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
    if choice := tool_choice(request):
        result["tool_choice"] = choice
    if request.response_format is not None:  # json_schema: the only kind declared
        fmt = {"type": "json_schema", "schema": request.response_format.schema or {}}
        result["output_config"] = {"format": fmt}
    return result


def tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    """OpenAI's `tool_choice` and `parallel_tool_calls` as Anthropic's one `tool_choice`."""
    choice = request.tool_choice
    mode = choice.mode if choice else "auto"
    if choice is None and request.parallel_tool_calls is not False:
        return None
    result: dict[str, Any] = {
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
        "tool": {"type": "tool", "name": choice.name if choice else None},
    }[mode]
    if request.parallel_tool_calls is False and mode != "none":
        result["disable_parallel_tool_use"] = True
    return result


def messages(conversation: list[Message]) -> list[dict[str, Any]]:
    """The turns without the system messages. An assistant's tool calls are `tool_use` blocks
    after its text; the answers to them are `tool_result` blocks in a user turn, one turn for
    consecutive answers. A tool message without the id of the call it answers (a client's plain
    conversation) goes as user text."""
    result: list[dict[str, Any]] = []
    for turn in turns(conversation):
        if isinstance(turn, tuple):
            answers = [
                {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
                for m in turn
            ]
            result.append({"role": "user", "content": answers})
        elif turn.role == "assistant" and turn.tool_calls:
            content: list[dict[str, Any]] = (
                [{"type": "text", "text": turn.content}] if turn.content else []
            )
            content += (
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in turn.tool_calls
            )
            result.append({"role": "assistant", "content": content})
        elif turn.images:
            blocks: list[dict[str, Any]] = [image_block(i) for i in turn.images]
            if turn.content:
                blocks.insert(0, {"type": "text", "text": turn.content})
            result.append({"role": "user", "content": blocks})
        else:
            role = "assistant" if turn.role == "assistant" else "user"
            result.append({"role": role, "content": turn.content})
    return result


def image_block(image: Image) -> dict[str, Any]:
    if image.is_data:
        media_type, data = image.data()
        source = {"type": "base64", "media_type": media_type, "data": data}
    else:
        source = {"type": "url", "url": image.url}
    return {"type": "image", "source": source}
