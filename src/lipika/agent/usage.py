"""What a model step is charged when the provider did not say: at a stop, or (never free)
when a stream reported no usage at all."""

from __future__ import annotations

from orjson import dumps

from lipika.agent.history import Reply
from lipika.providers.base import Usage

_CHARS_PER_TOKEN = 4


def usage_so_far(reply: Reply, input_tokens: int) -> Usage:
    """The provider's count where it gave one (output at least what was delivered), else the
    hold's input estimate and the delivered output."""
    delivered = estimate_output_tokens(reply)
    reported = reply.usage
    if reported is not None and reported.input_tokens > 0:
        return Usage(
            reported.input_tokens,
            max(reported.output_tokens, delivered),
            reported.cached_input_tokens,
        )
    return Usage(input_tokens, delivered)


def estimate_output_tokens(reply: Reply) -> int:
    """Tokens delivered so far, when the provider has not said (a stream cut short)."""
    chars = len(reply.text) + sum(len(c.name) + len(dumps(c.arguments)) for c in reply.tool_calls)
    return -(-chars // _CHARS_PER_TOKEN)
