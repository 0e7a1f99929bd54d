"""A provider adapter that plays a script, for tests that need exact control of each model
step (tool calls, failures at a given step, slow streams) without a provider on the wire.

Each model call takes the next `Reply`: text streamed a word a delta, then usage (as OpenAI
reports it, once at the end) and a `Finish` with the tool calls, or an error after
`fail_after` words. The requests every call received are recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lipika.providers.base import (
    ChatProvider,
    ChatRequest,
    ChatResult,
    Finish,
    StreamEvent,
    ToolCall,
    Usage,
)


@dataclass
class Reply:
    text: str = ""
    tool_calls: Sequence[tuple[str, dict[str, Any]]] = ()
    error: BaseException | None = None
    fail_after: int = 0  # words streamed before `error` is raised
    input_tokens: int = 100
    cached_tokens: int = 0
    output_tokens: int | None = None  # default: one a word, five a tool call
    report_usage: bool = True
    delay: float = 0.0

    @property
    def output(self) -> int:
        if self.output_tokens is not None:
            return self.output_tokens
        return len(self.text.split()) + 5 * len(self.tool_calls)


@dataclass
class Script:
    replies: list[Reply]
    calls: list[ChatRequest] = field(default_factory=list)

    def next(self, request: ChatRequest) -> Reply:
        self.calls.append(request)
        assert self.replies, "the model was called more often than the script says"
        return self.replies.pop(0)

    def provider(self) -> ScriptedProvider:
        return ScriptedProvider(self)


class ScriptedProvider(ChatProvider):
    name = "scripted"

    def __init__(self, script: Script) -> None:
        self.script = script

    async def complete(self, request: ChatRequest) -> ChatResult:
        raise NotImplementedError("the agent streams")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        reply = self.script.next(request)
        if reply.error is not None and reply.fail_after == 0:
            raise reply.error
        for index, word in enumerate(reply.text.split()):
            await asyncio.sleep(reply.delay)
            yield word if index == 0 else " " + word
            if reply.error is not None and index + 1 == reply.fail_after:
                raise reply.error
        if reply.report_usage:
            yield Usage(reply.input_tokens, reply.output, reply.cached_tokens)
        calls = tuple(
            ToolCall(f"call_{len(self.script.calls)}_{index}", name, args)
            for index, (name, args) in enumerate(reply.tool_calls)
        )
        yield Finish("tool_calls" if calls else "stop", calls)
