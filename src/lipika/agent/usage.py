"""The output a model step delivered, counted when the provider did not say: at a stop, or
(never free) when a stream reported no usage at all."""

from __future__ import annotations

from orjson import dumps

from lipika.agent.history import Reply

_CHARS_PER_TOKEN = 4


def estimate_output_tokens(reply: Reply) -> int:
    """Tokens delivered so far, when the provider has not said (a stream cut short)."""
    chars = len(reply.text) + sum(len(c.name) + len(dumps(c.arguments)) for c in reply.tool_calls)
    return -(-chars // _CHARS_PER_TOKEN)
