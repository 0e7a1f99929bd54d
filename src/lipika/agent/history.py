"""The thread's messages (LangChain's, as LangGraph keeps them in the checkpoints) as the
provider adapters take them, and a model's reply as the thread keeps it.

A reply is kept as plain text plus standard tool calls, so any provider's model can read the
thread on the next turn: one thread may go from Claude to GPT to Gemini.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata

from lipika.providers.base import FinishReason, Message, ToolCall, Usage

STOPPED = "error: the run stopped before this tool call completed"


def to_provider(messages: Sequence[BaseMessage]) -> list[Message]:
    """The conversation for a model call. A tool call that a stopped run never answered gets
    an error result after the answered ones: every provider refuses a conversation with an
    unanswered call, so the thread's next message would otherwise fail for good."""
    result: list[Message] = []
    unanswered: dict[str, ToolCall] = {}
    for message in messages:
        converted = _message(message)
        if converted.role == "tool":
            unanswered.pop(converted.tool_call_id or "", None)
        else:
            result += (
                Message("tool", STOPPED, tool_call_id=c.id, name=c.name)
                for c in unanswered.values()
            )
            unanswered = {c.id: c for c in converted.tool_calls}
        result.append(converted)
    return result


def _message(message: BaseMessage) -> Message:
    text = str(message.text)
    if isinstance(message, AIMessage):
        calls = tuple(ToolCall(c["id"] or "", c["name"], c["args"]) for c in message.tool_calls)
        return Message("assistant", text, tool_calls=calls)
    if isinstance(message, ToolMessage):
        return Message("tool", text, tool_call_id=message.tool_call_id, name=message.name)
    if isinstance(message, SystemMessage):
        return Message("system", text)
    return Message("user", text)


@dataclass(slots=True)
class Reply:
    """What one model call streamed back, gathered."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None  # as the provider last reported it; None if it never did
    finish_reason: FinishReason | None


def as_history(reply: Reply, usage: Usage, model: str, charged: int) -> AIMessage:
    return AIMessage(
        content=reply.text,
        tool_calls=[
            {"id": c.id, "name": c.name, "args": c.arguments, "type": "tool_call"}
            for c in reply.tool_calls
        ],
        # Our own id: the thread's reducer replaces a message with the same id.
        id=str(uuid.uuid4()),
        usage_metadata=UsageMetadata(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.input_tokens + usage.output_tokens,
            input_token_details={"cache_read": usage.cached_input_tokens},
        ),
        response_metadata={
            "model": model,
            "finish_reason": reply.finish_reason,
            "credits_charged": charged,
            "created_at": now(),
        },
    )


def now() -> str:
    return datetime.now(UTC).isoformat()
