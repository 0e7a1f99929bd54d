"""OpenAI Chat Completions through the official SDK, over its aiohttp transport.

Streams ask for `stream_options.include_usage`, so the last chunk (with `choices == []`)
carries the usage of the whole request, and end with `data: [DONE]`: a stream that stops
before it was cut short. A failure mid-stream is a `data: {"error": ...}` event.
`completion_tokens` include the reasoning tokens at OpenAI; providers on the same wire that
count reasoning apart (xAI) override `billed_output_tokens`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
from orjson import JSONDecodeError, dumps, loads

from lipika.providers.base import (
    FEATURES,
    STATUS_ERRORS,
    ChatRequest,
    ChatResult,
    Finish,
    FinishReason,
    Message,
    ProviderError,
    ProviderTimeout,
    ResponseFormat,
    SDKClientProvider,
    StreamEvent,
    TextWithLogprobs,
    ToolCallDelta,
    Usage,
    retry_hint,
)
from lipika.providers.transport import data_lines, timed_out

_Events = openai.AsyncStream[object]  # only its response is read, by `data_lines`
_FINISH: dict[str | None, FinishReason] = {
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
}
_INCLUDE_USAGE = {"include_usage": True}
_NONE: dict[str, Any] = {}


class OpenAIProvider(SDKClientProvider[openai.AsyncOpenAI]):
    name = "openai"
    # The request's own wire: every feature passes through as the client sent it.
    features = frozenset(FEATURES)
    default_base_url: str | None = None  # the SDK's own (or OPENAI_BASE_URL)

    def __init__(
        self, api_key: str | None, base_url: str | None, *, timeout: float, max_retries: int
    ) -> None:
        super().__init__(
            openai.AsyncOpenAI(
                api_key=api_key,
                base_url=base_url or self.default_base_url,
                timeout=timeout,
                max_retries=max_retries,
                # httpx's connection pool costs CPU quadratic in the number of open streams.
                http_client=openai.DefaultAioHttpClient(),
            )
            if api_key
            else None
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        try:
            response = await self.client.chat.completions.create(**self.params(request))
        except openai.APIError as exc:
            raise self.error(exc) from exc
        if not response.choices:
            raise ProviderError(f"{self.name}: the response has no choices")
        choice = response.choices[0]
        calls = [c for c in choice.message.tool_calls or () if c.type == "function"]
        return ChatResult(
            text=choice.message.content or "",
            usage=self.usage(response.usage.model_dump()) if response.usage else Usage(),
            finish_reason=_FINISH.get(choice.finish_reason, "stop"),
            provider_request_id=response.id,
            tool_calls=tuple(
                self.tool_call(c.id, c.function.name, c.function.arguments) for c in calls
            ),
            logprobs=choice.logprobs.model_dump(exclude_unset=True) if choice.logprobs else None,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Reads the server-sent events itself: the SDK's typed chunks cost a model construction
        per token, most of the CPU a relayed token costs. The SDK still sends the request (with
        its generic `post`: the typed `create` spends a millisecond checking the parameters
        against their TypedDicts), retries it and maps an error status to its exceptions
        before the body is read."""
        finish: str | None = None
        done = False
        calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]
        scored = request.logprobs
        try:
            body = {**self.params(request), "stream": True, "stream_options": _INCLUDE_USAGE}
            events = await self.client.post(
                "/chat/completions", body=body, cast_to=object, stream=True, stream_cls=_Events
            )
            async with events:
                async for line in data_lines(events.response):
                    if line == b"[DONE]":
                        done = True  # the body is read on to its end, so the connection is reused
                        continue
                    chunk = loads(line)
                    if choices := chunk.get("choices"):
                        choice = choices[0]
                        delta = choice.get("delta") or _NONE
                        if text := delta.get("content"):
                            yield TextWithLogprobs(text, choice.get("logprobs")) if scored else text
                        if pieces := delta.get("tool_calls"):
                            for piece in _gather(calls, pieces):
                                yield piece
                        if reason := choice.get("finish_reason"):
                            finish = reason
                    elif error := chunk.get("error"):
                        raise ProviderError(f"{self.name}: {_error_message(error) or error}")
                    if usage := chunk.get("usage"):
                        yield self.usage(usage)
        except (openai.APIError, httpx2.HTTPError) as exc:  # httpx2's come raw from the body
            raise self.error(exc) from exc
        except JSONDecodeError as exc:
            raise ProviderError(f"{self.name}: a malformed event: {exc}") from exc
        if not done:
            raise ProviderError(f"{self.name}: the stream ended before [DONE]")
        tool_calls = tuple(self.tool_call(*calls[index]) for index in sorted(calls))
        yield Finish(_FINISH.get(finish, "stop"), tool_calls)

    def params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "max_completion_tokens": request.max_output_tokens,
        }
        for name in ("temperature", "top_p", "seed", "parallel_tool_calls", "top_logprobs"):
            if (value := getattr(request, name)) is not None:
                params[name] = value
        if request.stop:
            params["stop"] = list(request.stop)
        if request.logprobs:
            params["logprobs"] = True
        if choice := request.tool_choice:
            params["tool_choice"] = (
                {"type": "function", "function": {"name": choice.name}}
                if choice.mode == "tool"
                else choice.mode
            )
        if fmt := request.response_format:
            params["response_format"] = (
                {"type": "json_object"}
                if fmt.type == "json_object"
                else {"type": "json_schema", "json_schema": _json_schema(fmt)}
            )
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        return params

    def usage(self, usage: dict[str, Any]) -> Usage:
        """The ledger's usage from a usage object (as JSON): prompt_tokens include the cached."""
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return Usage(usage["prompt_tokens"], self.billed_output_tokens(usage), cached)

    def billed_output_tokens(self, usage: dict[str, Any]) -> int:
        """The output the provider charges for; OpenAI's completion_tokens include reasoning."""
        return usage["completion_tokens"]

    def error(self, exc: openai.APIError | httpx2.HTTPError) -> ProviderError:
        """The `ProviderError` for an SDK or transport error, before the stream or during it."""
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException) and timed_out(exc):
            return ProviderTimeout(f"{self.name}: the request timed out")
        if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):
            return ProviderError(f"{self.name}: connection failed: {exc.__cause__ or exc}")
        if isinstance(exc, openai.APIStatusError):
            error = self.status_error(exc.status_code, _error_message(exc.body) or exc.message)
            error.retry_after = retry_hint(exc.response.headers)
            return error
        return ProviderError(f"{self.name}: {exc.message}")

    def status_error(self, status: int, message: str) -> ProviderError:
        error = STATUS_ERRORS.get(status, ProviderError)
        return error(f"{self.name} answered {status}: {message}")


def _message(m: Message) -> dict[str, Any]:
    """A message on the Chat Completions wire. A tool message without the id of the call it
    answers (a client's plain conversation) goes as user text."""
    if m.role == "tool":
        if m.tool_call_id is None:
            return {"role": "user", "content": m.content}
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    if m.tool_calls:
        return {
            "role": "assistant",
            "content": m.content or None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": dumps(c.arguments).decode()},
                }
                for c in m.tool_calls
            ],
        }
    if m.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        parts += ({"type": "image_url", "image_url": {"url": i.url}} for i in m.images)
        return {"role": m.role, "content": parts}
    return {"role": m.role, "content": m.content}


def _json_schema(fmt: ResponseFormat) -> dict[str, Any]:
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema or {}}
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return schema


def _gather(calls: dict[int, list[str]], pieces: list[dict[str, Any]]) -> list[ToolCallDelta]:
    """Adds streamed tool-call fragments: the first of a call brings its id and name, every
    one a piece of the arguments' JSON text. Returns them as deltas, to relay."""
    deltas = []
    for piece in pieces:
        function = piece.get("function") or _NONE
        index = piece.get("index", 0)
        call = calls.setdefault(index, ["", "", ""])
        call_id, name = piece.get("id"), function.get("name")
        if call_id:
            call[0] = call_id
        if name:
            call[1] = name
        arguments = function.get("arguments") or ""
        call[2] += arguments
        deltas.append(ToolCallDelta(index, call_id, name, arguments))
    return deltas


def _error_message(body: object) -> str | None:
    """The provider's own message: `{"message": ...}`, or a bare string (xAI's flat bodies)."""
    if isinstance(body, dict):
        message = body.get("message")
        return message if isinstance(message, str) else None
    return body if isinstance(body, str) else None
