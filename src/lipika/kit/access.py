"""The access-log record of the request in flight: who acted, on which model, what it cost.

The request middleware opens one record per request and writes it as the access-log line
when the response has ended. Code deeper down (authentication, the meter) adds to it through
`note` and `charge`; tasks the request starts (a stream's producer) inherit the same record
through the context, so a stream's charges reach its line too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_record: ContextVar[dict[str, Any] | None] = ContextVar("lipika_access_record", default=None)


@contextmanager
def recording() -> Iterator[dict[str, Any]]:
    """A fresh record for the request about to run (the middleware wraps each request)."""
    record: dict[str, Any] = {}
    token = _record.set(record)
    try:
        yield record
    finally:
        _record.reset(token)


def note(**fields: Any) -> None:
    """Sets fields of the current request's line (no-op outside a request)."""
    record = _record.get()
    if record is not None:
        record.update(fields)


def charge(model: str, outcome: str, usage: Mapping[str, int], credits: int) -> None:
    """Adds one settled operation: an agent run settles several, and its line sums them."""
    record = _record.get()
    if record is None:
        return
    record["model"] = model
    record["outcome"] = outcome
    record["credits_charged"] = record.get("credits_charged", 0) + credits
    for kind in ("input_tokens", "cached_input_tokens", "output_tokens"):
        if usage.get(kind):
            record[kind] = record.get(kind, 0) + usage[kind]


def first_token(ms: float) -> None:
    """The request's first time to first token (an agent run's first model step)."""
    record = _record.get()
    if record is not None:
        record.setdefault("ttft_ms", round(ms, 1))
