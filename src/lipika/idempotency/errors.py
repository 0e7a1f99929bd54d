from __future__ import annotations

from lipika.errors import Conflict, LipikaError


class IdempotencyKeyReused(LipikaError):
    """The key was first sent with another request: a client bug, never retried."""

    status_code = 422
    code = "idempotency_key_reused"
    should_retry = False


class IdempotentRequestInFlight(Conflict):
    """The first request with this key is still running: retrying shortly gets its answer."""

    code = "idempotency_request_in_flight"
    should_retry = True
    retry_after = 1


class StreamNotReplayed(Conflict):
    """The key's request was answered with a stream, which is not stored: use a new key."""

    code = "idempotency_stream_not_replayed"
    should_retry = False
