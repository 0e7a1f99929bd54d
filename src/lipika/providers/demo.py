"""The local demo model: deterministic, free of any network, priced like a real model.

Its usage scales with the request: input tokens are counted exactly (the same count as its
estimate, so the hold's input part is exact; an image counts 85), and it writes
min(64 + input_tokens // 4, max_output_tokens) tokens, so tests and demos can predict every
charge.

It shows the OpenAI features too: it calls a tool when `tool_choice` requires one (the named
one, else the first) or, on "auto", when the last user message names a declared tool (its
arguments: the schema's required properties, each a plain example value), and answers the
result of a call in words; it answers `response_format` with a JSON object (`{"answer": ...}`,
or an example of the schema); it ends its text before the first `stop` sequence. It is
deterministic, so `temperature`, `top_p` and `seed` change nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

from orjson import dumps

from lipika.providers.base import (
    FEATURES,
    ChatProvider,
    ChatRequest,
    ChatResult,
    Finish,
    FinishReason,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
)

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PER_MESSAGE_OVERHEAD = 4
_VOCABULARY = (
    "lipika demo model answers every question with the same careful words drawn from a small "
    "seeded vocabulary so that usage and credits can be predicted exactly in tests and demos "
    "without calling any provider or spending real money while the platform is explored"
).split()
DEFAULT_REPLY_TOKENS = 64
IMAGE_TOKENS = 85


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


class DemoProvider(ChatProvider):
    name = "demo"
    features = frozenset(FEATURES) - {"logprobs"}

    def __init__(
        self, default_reply_tokens: int = DEFAULT_REPLY_TOKENS, token_delay: float = 0.0
    ) -> None:
        self.default_reply_tokens = default_reply_tokens
        self.token_delay = token_delay

    def estimate_input_tokens(self, request: ChatRequest) -> int:
        return sum(
            count_tokens(m.content)
            + sum(count_tokens(c.name + dumps(c.arguments).decode()) for c in m.tool_calls)
            + IMAGE_TOKENS * len(m.images)
            + _PER_MESSAGE_OVERHEAD
            for m in request.messages
        )

    def reply_length(self, request: ChatRequest, input_tokens: int) -> int:
        wanted = self.default_reply_tokens + input_tokens // 4
        return min(wanted, request.max_output_tokens)

    def reply_words(self, request: ChatRequest) -> list[str]:
        input_tokens = self.estimate_input_tokens(request)
        seed = hashlib.sha256("\n".join(m.content for m in request.messages).encode()).digest()
        length = self.reply_length(request, input_tokens)
        return [
            _VOCABULARY[seed[i % len(seed)] * (i + 1) % len(_VOCABULARY)] for i in range(length)
        ]

    def reply(self, request: ChatRequest) -> tuple[list[str], FinishReason]:
        """The answer's tokens (words, or pieces of JSON) and why it ends."""
        last = request.messages[-1]
        if request.response_format is not None and last.role != "tool":
            fmt = request.response_format
            value = (
                example(fmt.schema)
                if fmt.schema
                else {"answer": " ".join(self.reply_words(request)[:8])}
            )
            pieces = _TOKEN.findall(dumps(value).decode())
            if len(pieces) > request.max_output_tokens:
                return pieces[: request.max_output_tokens], "length"
            return pieces, "stop"
        if last.role == "tool":
            words = f"The {last.name or 'tool'} tool returned: {last.content}".split()
        else:
            words = self.reply_words(request)
        for stop in request.stop:
            text = " ".join(words)
            if stop in text:
                return text[: text.index(stop)].split(), "stop"
        finish = "length" if len(words) >= request.max_output_tokens else "stop"
        return words[: request.max_output_tokens], finish

    def calls(self, request: ChatRequest) -> tuple[ToolCall, ...]:
        """The tool calls it makes, if any (see the module's docstring)."""
        choice, tools = request.tool_choice, request.tools
        if not tools or request.messages[-1].role == "tool" or (choice and choice.mode == "none"):
            return ()
        if choice and choice.mode == "tool":
            chosen = [t for t in tools if t.name == choice.name]
        elif choice and choice.mode == "required":
            chosen = [tools[0]]
        else:
            said = set(re.findall(r"\w+", request.messages[-1].content))
            chosen = [t for t in tools if t.name in said]
        if request.parallel_tool_calls is False:
            chosen = chosen[:1]
        digest = hashlib.sha256(request.messages[-1].content.encode()).hexdigest()[:16]
        return tuple(
            ToolCall(f"call_demo_{digest}_{i}", t.name, example(t.parameters))
            for i, t in enumerate(chosen)
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        input_tokens = self.estimate_input_tokens(request)
        if calls := self.calls(request):
            output = sum(count_tokens(c.name + dumps(c.arguments).decode()) for c in calls)
            usage = Usage(input_tokens=input_tokens, output_tokens=output)
            return ChatResult("", usage, "tool_calls", tool_calls=calls)
        pieces, finish = self.reply(request)
        joiner = "" if request.response_format else " "
        usage = Usage(input_tokens=input_tokens, output_tokens=len(pieces))
        return ChatResult(text=joiner.join(pieces), usage=usage, finish_reason=finish)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """One word a token, like `complete`; usage grows with every word, as Gemini reports it."""
        input_tokens = self.estimate_input_tokens(request)
        if calls := self.calls(request):
            output = 0
            for index, call in enumerate(calls):
                arguments = dumps(call.arguments).decode()
                await asyncio.sleep(self.token_delay)
                yield ToolCallDelta(index, call.id, call.name, arguments)
                output += count_tokens(call.name + arguments)
                yield Usage(input_tokens=input_tokens, output_tokens=output)
            yield Finish("tool_calls", calls)
            return
        pieces, finish = self.reply(request)
        joiner = "" if request.response_format else " "
        for written, piece in enumerate(pieces, start=1):
            await asyncio.sleep(self.token_delay)
            yield piece if written == 1 else joiner + piece
            yield Usage(input_tokens=input_tokens, output_tokens=written)
        yield Finish(finish)


def example(schema: dict[str, Any] | None) -> Any:
    """A plain value of a JSON schema: its required properties, each the first of its enum,
    or "demo", 0, false, [] by type."""
    schema = schema or {}
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example(schema[key][0])
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example(properties.get(name)) for name in schema.get("required") or ()}
    return {"string": "demo", "integer": 0, "number": 0, "boolean": False, "array": []}.get(kind)
