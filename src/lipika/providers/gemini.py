"""Gemini (the Gemini Developer API) through the official google-genai SDK.

The SDK streams over aiohttp on its own whenever aiohttp is installed. Every chunk carries the
cumulative `usage_metadata`: input is `prompt_token_count` (cached tokens included, tool-use
prompts added), output is `candidates_token_count` plus `thoughts_token_count`, which Google
bills as output. A stream ends with the chunk that carries a finish reason.

A tool call is a `function_call` part, sent whole in one chunk. Gemini finishes a turn that calls
tools with STOP, read here as "tool_calls"; it may send no call id, and the adapter then makes one.

The SDK validates every chunk into its pydantic models (about 0.3 ms of CPU a chunk) and has
no public way to read the raw stream; Gemini sends many tokens a chunk, which keeps that
bearable. The SDK's own behaviour is pinned down: automatic function calling off (there are no Python
tools to call), retries only as configured (it otherwise retries connection errors once after
a 1–10 s sleep), and its timeout bounds the whole call, stream included.
"""

from __future__ import annotations

import asyncio
import base64
import weakref
from collections.abc import AsyncIterator, Iterable
from types import SimpleNamespace
from uuid import uuid4

import aiohttp
from google import genai
from google.genai import errors, types
from orjson import dumps

from lipika.providers.base import (
    STATUS_ERRORS,
    ChatProvider,
    ChatRequest,
    ChatResult,
    Finish,
    FinishReason,
    ProviderAuthFailed,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    StreamEvent,
    TextWithLogprobs,
    ToolCall,
    ToolCallDelta,
    Usage,
    retry_hint,
    turns,
)

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")
_FINISH: dict[str, FinishReason] = {"MAX_TOKENS": "length"} | dict.fromkeys(
    _FILTERED, "content_filter"
)
_NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


class GeminiProvider(ChatProvider):
    name = "gemini"
    # Gemini takes images inline only (a URL must be a file uploaded to Google). It has no
    # switch for parallel calls: with `parallel_tool_calls: false` the adapter keeps the first
    # call of a turn. Its log probabilities are read into OpenAI's shape.
    features = frozenset(
        {"tools", "tool_choice", "parallel_tool_calls", "stop", "temperature", "top_p", "seed"}
        | {"json_object", "json_schema", "logprobs", "image_data"}
    )

    def __init__(
        self, api_key: str | None, base_url: str | None, *, timeout: float, max_retries: int
    ) -> None:
        self._api_key = api_key
        self._options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout * 1000),  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=max_retries + 1),
        )
        self._client: genai.Client | None = None
        self._session: aiohttp.ClientSession | None = None
        # The HTTP response of each open stream, by the task that opened it (see `_opened`).
        self._streams: weakref.WeakKeyDictionary[asyncio.Task, aiohttp.ClientResponse] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def available(self) -> bool:
        return bool(self._api_key)

    @property
    def client(self) -> genai.client.AsyncClient:
        """The SDK's async client, made on first use: its aiohttp session needs a running loop."""
        if not self._api_key:
            raise ProviderAuthFailed(f"{self.name}: no API key is configured")
        if self._client is None:
            tracing = aiohttp.TraceConfig()
            tracing.on_request_end.append(self._opened)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), trust_env=True, trace_configs=[tracing]
            )
            options = self._options.model_copy(update={"aiohttp_client": self._session})
            self._client = genai.Client(vertexai=False, api_key=self._api_key, http_options=options)
        return self._client.aio

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
        if self._session is not None:
            await self._session.close()

    async def _opened(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        """Keeps the response of a stream, so that `stream` can close it when left early.

        The SDK's stream holds its response in a reference cycle: closing the SDK's iterator
        leaves the connection open (and the model generating) until the garbage collector
        runs. This hook runs in the task that sends the request, which is the task reading it.
        """
        task = asyncio.current_task()
        if task is not None and params.url.path.endswith(":streamGenerateContent"):
            self._streams[task] = params.response

    async def complete(self, request: ChatRequest) -> ChatResult:
        try:
            response = await self.client.models.generate_content(
                model=request.model, contents=contents(request), config=config(request)
            )
        except (errors.APIError, aiohttp.ClientError, TimeoutError) as exc:
            raise self.error(exc) from exc
        candidate = response.candidates[0] if response.candidates else None
        parts = candidate.content.parts if candidate and candidate.content else None
        if candidate is not None:
            finish = candidate.finish_reason
        elif response.prompt_feedback and response.prompt_feedback.block_reason:
            finish = "SAFETY"  # the prompt itself was blocked
        else:
            finish = None
        meta = response.usage_metadata
        calls = tool_calls(parts or ())
        if request.parallel_tool_calls is False:
            calls = calls[:1]
        scores = candidate.logprobs_result if candidate and request.logprobs else None
        return ChatResult(
            text="".join(p.text for p in parts or () if p.text and not p.thought),
            usage=usage(meta) if meta else Usage(),
            finish_reason=finish_reason(finish, calling=bool(calls)),
            provider_request_id=response.response_id,
            tool_calls=calls,
            logprobs=openai_logprobs(scores) if scores else None,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        task = asyncio.current_task()
        finish: types.FinishReason | str | None = None
        last: Usage | None = None
        calls: list[ToolCall] = []
        one_call = request.parallel_tool_calls is False
        scored = request.logprobs
        upstream: AsyncIterator[types.GenerateContentResponse] | None = None
        response: aiohttp.ClientResponse | None = None
        started = False
        try:
            upstream = await self.client.models.generate_content_stream(
                model=request.model, contents=contents(request), config=config(request)
            )
            async for chunk in upstream:
                if not started:  # the request went out in this task, just now
                    started = True
                    response = self._streams.pop(task, None)
                if chunk.candidates:
                    candidate = chunk.candidates[0]
                    content = candidate.content
                    if content and content.parts:
                        scores = candidate.logprobs_result if scored else None
                        for part in content.parts:
                            if part.text and not part.thought and scored:
                                # a chunk's scores go with its first text part
                                logprobs = openai_logprobs(scores) if scores else None
                                yield TextWithLogprobs(part.text, logprobs)
                                scores = None
                            elif part.text and not part.thought:
                                yield part.text
                            elif part.function_call and (one_call and calls):
                                continue  # parallel calls off: the first call only
                            elif part.function_call:
                                call = tool_call(part.function_call)
                                arguments = dumps(call.arguments).decode()
                                yield ToolCallDelta(len(calls), call.id, call.name, arguments)
                                calls.append(call)
                    if candidate.finish_reason:
                        finish = candidate.finish_reason
                elif chunk.prompt_feedback and chunk.prompt_feedback.block_reason:
                    finish = "SAFETY"
                if chunk.usage_metadata:
                    current = usage(chunk.usage_metadata)
                    if current != last:
                        last = current
                        yield current
        except (errors.APIError, aiohttp.ClientError, TimeoutError) as exc:
            raise self.error(exc, mid_stream=started) from exc
        finally:
            if upstream is not None:
                await upstream.aclose()  # type: ignore[attr-defined]
            if response is None:
                response = self._streams.pop(task, None)
            if response is not None:
                response.close()  # closes the connection unless the SDK already released it
        if finish is None:
            raise ProviderError(f"{self.name}: the stream ended without a finish reason")
        yield Finish(finish_reason(finish, calling=bool(calls)), tuple(calls))

    def error(self, exc: Exception, *, mid_stream: bool = False) -> ProviderError:
        """The `ProviderError` for an SDK or transport error. An error in the stream (Gemini
        sends it as an error object in place of a chunk) is a plain ProviderError unless it
        says the provider was busy: "rejected" and "auth" outcomes mean "before any output"."""
        if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
            return ProviderTimeout(f"{self.name}: the request timed out")
        if isinstance(exc, aiohttp.ClientError):
            return ProviderError(f"{self.name}: connection failed: {exc}")
        assert isinstance(exc, errors.APIError)
        message = f"{self.name} answered {exc.code} {exc.status}: {exc.message}"
        if exc.code == 400 and _reason(exc) == "API_KEY_INVALID":  # Google's answer to a bad key
            return ProviderAuthFailed(message)
        error = STATUS_ERRORS.get(exc.code, ProviderError)
        if mid_stream and error in (ProviderRejected, ProviderAuthFailed):
            error = ProviderError
        headers = getattr(exc.response, "headers", None)
        return error(message, retry_after=_retry_delay(exc) or retry_hint(headers))


def contents(request: ChatRequest) -> list[types.Content]:
    """The turns without the system messages; the assistant's role is "model".

    An assistant's tool calls are `function_call` parts after its text; the answers to them are
    `function_response` parts in a user turn, one turn for consecutive answers. Gemini matches
    an answer to its call by name: a tool message without one takes its call's. A tool message
    without the id of the call it answers (a client's plain conversation) goes as user text.
    """
    result: list[types.Content] = []
    names: dict[str, str] = {}  # call id -> tool name
    for turn in turns(request.messages):
        if isinstance(turn, tuple):
            answers = [
                types.Part(
                    function_response=types.FunctionResponse(
                        id=m.tool_call_id,
                        name=m.name or names.get(m.tool_call_id or ""),
                        response={"result": m.content},
                    )
                )
                for m in turn
            ]
            result.append(types.Content(role="user", parts=answers))
        elif turn.role == "assistant" and turn.tool_calls:
            parts = [types.Part(text=turn.content)] if turn.content else []
            for c in turn.tool_calls:
                names[c.id] = c.name
                call = types.FunctionCall(id=c.id, name=c.name, args=c.arguments)
                parts.append(types.Part(function_call=call))
            result.append(types.Content(role="model", parts=parts))
        else:
            role = "model" if turn.role == "assistant" else "user"
            parts = [types.Part(text=turn.content)] if turn.content or not turn.images else []
            for image in turn.images:  # data URLs only: the features say so
                media_type, data = image.data()
                blob = types.Blob(mime_type=media_type, data=base64.b64decode(data))
                parts.append(types.Part(inline_data=blob))
            result.append(types.Content(role=role, parts=parts))
    return result


def config(request: ChatRequest) -> types.GenerateContentConfig:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    tools = None
    if request.tools:
        declarations = [
            types.FunctionDeclaration(
                name=t.name, description=t.description, parameters_json_schema=t.parameters
            )
            for t in request.tools
        ]
        tools = [types.Tool(function_declarations=declarations)]
    fmt = request.response_format
    return types.GenerateContentConfig(
        response_logprobs=True if request.logprobs else None,
        logprobs=request.top_logprobs if request.logprobs and request.top_logprobs else None,
        system_instruction=system or None,
        max_output_tokens=request.max_output_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        seed=request.seed,
        stop_sequences=list(request.stop) or None,
        response_mime_type="application/json" if fmt else None,
        response_json_schema=fmt.schema if fmt and fmt.type == "json_schema" else None,
        tools=tools,
        tool_config=tool_config(request),
        automatic_function_calling=_NO_AFC,
    )


_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}


def tool_config(request: ChatRequest) -> types.ToolConfig | None:
    """OpenAI's `tool_choice`: a named tool is "any" of a list of one."""
    choice = request.tool_choice
    if choice is None:
        return None
    calling = types.FunctionCallingConfig(
        mode=_MODES[choice.mode],
        allowed_function_names=[choice.name] if choice.mode == "tool" and choice.name else None,
    )
    return types.ToolConfig(function_calling_config=calling)


def tool_calls(parts: Iterable[types.Part]) -> tuple[ToolCall, ...]:
    return tuple(tool_call(p.function_call) for p in parts if p.function_call)


def tool_call(call: types.FunctionCall) -> ToolCall:
    return ToolCall(call.id or f"call_{uuid4().hex}", call.name or "", dict(call.args or {}))


def finish_reason(
    reason: types.FinishReason | str | None, *, calling: bool = False
) -> FinishReason:
    """Ours for Gemini's; `calling`: the turn has tool calls (Gemini says STOP)."""
    name = getattr(reason, "value", reason)
    mapped = _FINISH.get(name, "stop") if isinstance(name, str) else "stop"
    return "tool_calls" if calling and mapped == "stop" else mapped


def openai_logprobs(result: types.LogprobsResult) -> dict:
    """Gemini's chosen and top candidates as OpenAI's choice `logprobs`."""
    tops = result.top_candidates or []
    content = []
    for i, chosen in enumerate(result.chosen_candidates or []):
        alternatives = tops[i].candidates or [] if i < len(tops) else []
        content.append(
            {
                **_token(chosen),
                "top_logprobs": [_token(alternative) for alternative in alternatives],
            }
        )
    return {"content": content, "refusal": None}


def _token(candidate: types.LogprobsResultCandidate) -> dict:
    token = candidate.token or ""
    return {"token": token, "logprob": candidate.log_probability, "bytes": list(token.encode())}


def usage(meta: types.GenerateContentResponseUsageMetadata) -> Usage:
    prompt = (meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)
    output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return Usage(prompt, output, meta.cached_content_token_count or 0)


def _retry_delay(exc: errors.APIError) -> float | None:
    """The `retryDelay` of a RetryInfo in a Google error body ("30s"), if any."""
    body = exc.details if isinstance(exc.details, dict) else {}
    for detail in body.get("error", {}).get("details") or []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def _reason(exc: errors.APIError) -> str | None:
    """The `reason` of the first ErrorInfo in a Google error body, if any."""
    body = exc.details if isinstance(exc.details, dict) else {}
    for detail in body.get("error", {}).get("details") or []:
        if isinstance(detail, dict) and "reason" in detail:
            return detail["reason"]
    return None
