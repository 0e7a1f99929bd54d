"""The local demo model: deterministic, free of any network, priced like a real model.

Its usage scales with the request: input tokens are counted exactly (the same count as its
estimate, so the hold's input part is exact), and it writes min(64 + input_tokens // 4,
max_output_tokens) tokens, so tests and demos can predict every charge.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator

from lipika.providers.base import (
    ChatProvider,
    ChatRequest,
    ChatResult,
    Finish,
    StreamEvent,
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


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


class DemoProvider(ChatProvider):
    name = "demo"

    def __init__(
        self, default_reply_tokens: int = DEFAULT_REPLY_TOKENS, token_delay: float = 0.0
    ) -> None:
        self.default_reply_tokens = default_reply_tokens
        self.token_delay = token_delay

    def estimate_input_tokens(self, request: ChatRequest) -> int:
        return sum(count_tokens(m.content) + _PER_MESSAGE_OVERHEAD for m in request.messages)

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

    async def complete(self, request: ChatRequest) -> ChatResult:
        words = self.reply_words(request)
        usage = Usage(input_tokens=self.estimate_input_tokens(request), output_tokens=len(words))
        finish = "length" if len(words) >= request.max_output_tokens else "stop"
        return ChatResult(text=" ".join(words), usage=usage, finish_reason=finish)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """One word a token, like `complete`; usage grows with every word, as Gemini reports it."""
        words = self.reply_words(request)
        input_tokens = self.estimate_input_tokens(request)
        for written, word in enumerate(words, start=1):
            await asyncio.sleep(self.token_delay)
            yield word if written == 1 else " " + word
            yield Usage(input_tokens=input_tokens, output_tokens=written)
        yield Finish("length" if len(words) >= request.max_output_tokens else "stop")
