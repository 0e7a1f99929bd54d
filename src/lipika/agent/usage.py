"""Token usage as LangChain reports it, in the price book's units; and the estimates a hold needs.

Every LangChain chat model puts usage on `AIMessageChunk.usage_metadata`, and adding chunks sums
it, so the aggregate of a stream carries the whole call's usage whichever chunk brought it
(OpenAI and xAI: the last, `choices == []`, when `stream_usage` is on; Anthropic: the
`message_delta`; Gemini: a difference on every chunk; the demo model: one token a chunk).
`input_tokens` includes cached reads (`input_token_details.cache_read`), which are billed at the
cached rate and not twice; `output_tokens` includes reasoning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

_PER_MESSAGE_OVERHEAD = 8
_CHARS_PER_TOKEN = 4


def price_units(usage: Mapping[str, Any]) -> dict[str, int]:
    """LangChain `usage_metadata` -> {input_tokens, cached_input_tokens, output_tokens}."""
    details = usage.get("input_token_details") or {}
    total_input = int(usage.get("input_tokens") or 0)
    cached = min(int(details.get("cache_read") or 0), total_input)
    return {
        "input_tokens": total_input - cached,
        "cached_input_tokens": cached,
        "output_tokens": int(usage.get("output_tokens") or 0),
    }


def estimate_input_tokens(messages: Sequence[BaseMessage], tool_schemas: Sequence[Any] = ()) -> int:
    """An upper estimate of a call's input tokens, for its hold (as `ChatProvider` estimates).

    Half the characters of every message, tool call and tool schema, plus an overhead per
    message: above the real count for ordinary text. A capture above the hold is recorded as
    overage, so a low estimate never makes the ledger wrong, only the hold small.
    """
    chars = sum(len(_message_text(m)) for m in messages)
    chars += sum(len(json.dumps(schema, default=str)) for schema in tool_schemas)
    return chars // 2 + _PER_MESSAGE_OVERHEAD * (len(messages) + 1)


def estimate_output_tokens(message: AIMessage | None) -> int:
    """Tokens delivered so far, when the provider has not said (a stream cut short)."""
    if message is None:
        return 0
    chars = len(str(message.text)) + sum(
        len(json.dumps(call.get("args", {}))) for call in message.tool_calls
    )
    return -(-chars // _CHARS_PER_TOKEN)


def _message_text(message: BaseMessage) -> str:
    text = str(message.text)
    if isinstance(message, AIMessage) and message.tool_calls:
        text += json.dumps([{"name": c["name"], "args": c["args"]} for c in message.tool_calls])
    return text
