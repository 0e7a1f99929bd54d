"""Idempotency keys, as Stripe has them: a request sent again with the same `Idempotency-Key`
gets the first answer back instead of running twice.

A key belongs to one caller (the workspace and the API key, or the user) and is kept for
`LIPIKA_IDEMPOTENCY_TTL_SECONDS` (24 hours). The first request claims it, in a transaction of
its own, before its work starts; the unique (scope, key) pair makes one claim win however many
copies arrive at once. Then:

- the same key with another request (method, path, query or JSON body) is 422
  `idempotency_key_reused`;
- while the first runs, a copy is 409 `idempotency_request_in_flight` (retryable);
- once it has answered, copies get its stored answer (status, body, content type), marked
  `Idempotent-Replayed: true`;
- a streamed answer (SSE) is not stored: copies are 409 `idempotency_stream_not_replayed`;
- an answer that says "try again" (409, 429, 5xx) or a request refused before it ran (422 on
  its body) is not stored: the key is released and the next copy runs afresh. Money stays
  exactly once even then: a paid request passes the key on to its hold's idempotency key.

A claim whose request died (the pod was killed) is taken over by the next copy after
`LIPIKA_IDEMPOTENCY_LOCK_SECONDS`.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from lipika.config import Settings
from lipika.db import utcnow
from lipika.errors import LipikaError, error_response, is_outage
from lipika.idempotency.errors import (
    IdempotencyKeyReused,
    IdempotentRequestInFlight,
    StreamNotReplayed,
)
from lipika.idempotency.models import RecordState
from lipika.idempotency.repository import IdempotencyRepository
from lipika.kit.routing import AnswerNow

log = structlog.get_logger()

REPLAYED_HEADER = "Idempotent-Replayed"
_STORED_HEADERS = ("content-type", "location")
_NOT_STORED_STATUSES = {409, 429}


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests "the same": method, path, query and the JSON body's value
    (key order and whitespace do not matter), or its bytes when it is not JSON."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


class Replay(AnswerNow):  # noqa: N818
    """The stored answer of an earlier request with the same key."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A key this request holds in flight: told how the request ended (kit/routing.py), it
    stores the answer or releases the key."""

    store: IdempotencyStore
    record_id: uuid.UUID
    claim: uuid.UUID

    async def answered(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> None:
        try:
            await self._record(status, headers, body)
        except Exception as exc:
            # The answer still goes out; the key stays in flight until its lock runs out.
            if not is_outage(exc):
                raise
            log.error("idempotency_record_failed", error=repr(exc))

    async def _record(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> None:
        if status >= 500 or status in _NOT_STORED_STATUSES:
            await self.store.release(self)
        elif body is None:
            await self.store.finish(self, RecordState.STREAMED)
        else:
            kept = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in headers
                if name.decode("latin-1").lower() in _STORED_HEADERS
            }
            await self.store.finish(self, RecordState.DONE, status, kept, body)

    async def failed(self, exc: BaseException) -> None:
        """A typed refusal the handler decided is the request's answer; anything else (a
        malformed body, an outage, a bug) releases the key."""
        if isinstance(exc, LipikaError) and exc.status_code < 500:
            response = error_response(exc)
            await self.answered(response.status_code, response.raw_headers, response.body)
        else:
            await self.answered(500, [], None)  # released, as every 5xx is

    async def abandoned(self) -> None:
        await self.answered(500, [], None)


@dataclass(frozen=True, slots=True)
class IdempotencyStore:
    engine: AsyncEngine
    ttl: timedelta
    lock: timedelta

    @classmethod
    def for_settings(cls, settings: Settings, engine: AsyncEngine) -> IdempotencyStore:
        return cls(
            engine,
            timedelta(seconds=settings.idempotency_ttl_seconds),
            timedelta(seconds=settings.idempotency_lock_seconds),
        )

    async def claim(self, scope: str, key: str, fingerprint: str) -> Claim:
        """Claims the key for this request, or raises: `Replay` with the stored answer, or
        the refusal of a copy (see the module)."""
        for _ in range(2):  # a second pass after removing an expired record
            now = utcnow()
            claim = uuid.uuid4()
            record_id = uuid.uuid4()
            async with self.engine.begin() as conn:
                repo = IdempotencyRepository(conn)
                inserted = await repo.insert(
                    {
                        "id": record_id,
                        "scope": scope,
                        "key": key,
                        "fingerprint": fingerprint,
                        "state": RecordState.IN_FLIGHT,
                        "claim": claim,
                        "locked_until": now + self.lock,
                        "expires_at": now + self.ttl,
                        "created_at": now,
                    }
                )
                if inserted:
                    return Claim(self, record_id, claim)
                found = await repo.find(scope, key)
                if found is None:  # removed since the insert: try again
                    continue
                if found.expires_at <= now:
                    await repo.delete_expired_one(found.id, now)
                    continue
                if found.fingerprint != fingerprint:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was already used with a different request; "
                        "send a new key for a new request",
                        param="Idempotency-Key",
                    )
                if found.state == RecordState.DONE:
                    raise Replay(_replay(found.status_code, found.headers, found.body))
                if found.state == RecordState.STREAMED:
                    raise StreamNotReplayed(
                        "the request with this Idempotency-Key was answered with a stream, "
                        "which is not replayed; send a new key to run it again"
                    )
                if _expired_lock(found.locked_until, now) and await repo.take_over(
                    found.id, claim, now, now + self.lock
                ):
                    return Claim(self, found.id, claim)
                raise IdempotentRequestInFlight(
                    "a request with this Idempotency-Key is still in progress; retry shortly"
                )
        raise IdempotentRequestInFlight(
            "a request with this Idempotency-Key is still in progress; retry shortly"
        )

    async def finish(
        self,
        claim: Claim,
        state: RecordState,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        async with self.engine.begin() as conn:
            await IdempotencyRepository(conn).answer(
                claim.record_id, claim.claim, state, status_code, headers, body
            )

    async def release(self, claim: Claim) -> None:
        async with self.engine.begin() as conn:
            await IdempotencyRepository(conn).release(claim.record_id, claim.claim)

    async def purge_expired(self) -> dict[str, int]:
        """The periodic task: stored answers past their 24 hours are deleted."""
        async with self.engine.begin() as conn:
            return {"expired_keys": await IdempotencyRepository(conn).purge_expired(utcnow())}


def _expired_lock(locked_until: datetime, now: datetime) -> bool:
    return locked_until <= now


def _replay(
    status_code: int | None, headers: dict[str, str] | None, body: bytes | None
) -> Response:
    response = Response(content=body or b"", status_code=status_code or 200)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response
