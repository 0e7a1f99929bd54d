"""A LangChain chat model that plays a script, for tests that need exact control of each model
step (tool calls, failures at a given step, slow streams) without a provider on the wire.

Each model call takes the next `Reply`: text streamed a word a chunk, then tool calls streamed
as argument fragments, then usage on a final chunk (as OpenAI reports it), or an error after
`fail_after` words. The messages every call received are recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from lipika.agent.models import ModelProvider


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
    calls: list[list[BaseMessage]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Reply:
        self.calls.append(list(messages))
        self.kwargs.append(kwargs)
        assert self.replies, "the model was called more often than the script says"
        return self.replies.pop(0)

    def provider(self) -> ModelProvider:
        return ModelProvider(lambda settings, price: ScriptedChatModel(script=self))


class ScriptedChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Script

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        raise NotImplementedError("the agent streams")

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        reply = self.script.next(messages, kwargs)
        if reply.error is not None and reply.fail_after == 0:
            raise reply.error
        for index, word in enumerate(reply.text.split()):
            await asyncio.sleep(reply.delay)
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=word if index == 0 else " " + word)
            )
            if reply.error is not None and index + 1 == reply.fail_after:
                raise reply.error
        for index, (name, args) in enumerate(reply.tool_calls):
            arguments = json.dumps(args)
            call_id = f"call_{len(self.script.calls)}_{index}"
            for start in range(0, max(len(arguments), 1), 8):
                chunk = {
                    "index": index,
                    "args": arguments[start : start + 8],
                    "name": None,
                    "id": None,
                }
                if start == 0:
                    chunk |= {"name": name, "id": call_id}
                yield ChatGenerationChunk(
                    message=AIMessageChunk(content="", tool_call_chunks=[chunk])
                )
        usage = None
        if reply.report_usage:
            usage = {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output,
                "total_tokens": reply.input_tokens + reply.output,
                "input_token_details": {"cache_read": reply.cached_tokens},
            }
        finish = "tool_calls" if reply.tool_calls else "stop"
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata={"finish_reason": finish},
                chunk_position="last",
            )
        )
