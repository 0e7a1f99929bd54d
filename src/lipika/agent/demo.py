"""The local demo model as a LangChain chat model, so the agent runs with no provider key.

It wraps `providers.demo.DemoProvider`: the same deterministic words and the same exact token
counts, streamed one word a chunk with `usage_metadata` on each (input tokens on the first,
one output token each), so the aggregate carries the call's usage as a real provider's does.
It ignores tools: it never asks for one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict

from lipika.providers.base import ChatRequest, Finish, Message, Usage
from lipika.providers.demo import DemoProvider

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class DemoChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: str = "demo"
    max_tokens: int = 4096
    token_delay: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "lipika-demo"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        return self

    def estimate_input_tokens(self, messages: Sequence[BaseMessage]) -> int:
        """Exact, as the demo provider counts."""
        return DemoProvider().estimate_input_tokens(self._request(messages, self.max_tokens))

    def _request(self, messages: Sequence[BaseMessage], max_tokens: int) -> ChatRequest:
        converted = [Message(_ROLES.get(m.type, "user"), str(m.text)) for m in messages]  # type: ignore[arg-type]
        return ChatRequest(model=self.model_name, messages=converted, max_output_tokens=max_tokens)

    def _provider(self) -> DemoProvider:
        return DemoProvider(token_delay=self.token_delay)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, kwargs.get("max_tokens") or self.max_tokens)
        provider = self._provider()
        words = provider.reply_words(request)
        usage = _usage(provider.estimate_input_tokens(request), len(words))
        message = AIMessage(content=" ".join(words), usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = self._request(messages, kwargs.get("max_tokens") or self.max_tokens)
        reported = Usage()
        text: str | None = None
        async for event in self._provider().stream(request):
            if isinstance(event, str):
                text = event
            elif isinstance(event, Usage) and text is not None:
                delta = _usage(
                    event.input_tokens - reported.input_tokens,
                    event.output_tokens - reported.output_tokens,
                )
                reported = event
                chunk = ChatGenerationChunk(
                    message=AIMessageChunk(content=text, usage_metadata=delta)
                )
                text = None
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            elif isinstance(event, Finish):
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content="",
                        response_metadata={"finish_reason": event.reason, "model_name": "demo"},
                        chunk_position="last",
                    )
                )


def _usage(input_tokens: int, output_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )
