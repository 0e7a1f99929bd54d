"""Registering endpoints, writing events to the outbox, and delivering them.

An event is written to the outbox in the transaction that made it (a job's final status), one
message per endpoint that wants it; the sender then posts it, signed per Standard Webhooks
(`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` by the
`standardwebhooks` package), and records every attempt. A message that is not answered 2xx is
retried on a backoff schedule and given up after the last attempt. Delivery is at least once:
a receiver deduplicates on `webhook-id`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from lipika.auth.dependencies import Principal
from lipika.db import utcnow
from lipika.errors import NotFound
from lipika.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from lipika.webhooks.repository import WebhookRepository
from lipika.webhooks.schemas import WebhookEndpointCreate
from lipika.webhooks.targets import check_url, resolves_public
from lipika.workspaces.models import Role

log = structlog.get_logger()

# Delays before attempts 2, 3, ... as multiples of the base delay (5 s by default: 5 s, 30 s,
# 3 min, 18 min, 1 h, 2 h).
BACKOFF = (1, 6, 36, 216, 720, 1440)
BATCH = 100
CLAIM = timedelta(minutes=2)  # how long a claimed message is this sender's alone


async def enqueue(
    session: AsyncSession, workspace_id: uuid.UUID, event: str, data: Mapping[str, Any]
) -> int:
    """Writes `event` to the outbox for each endpoint of the workspace that wants it, in the
    caller's transaction. Returns how many messages were written."""
    repo = WebhookRepository(session)
    now = utcnow()
    messages = [
        WebhookMessage(
            id=f"msg_{uuid.uuid4().hex}",
            endpoint_id=endpoint.id,
            type=event,
            payload={"type": event, "timestamp": now.isoformat(), "data": dict(data)},
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint in await repo.endpoints(workspace_id)
        if event in endpoint.events
    ]
    if messages:
        await repo.add_messages(messages)
    return len(messages)


class WebhookService:
    def __init__(self, session: AsyncSession, *, allow_private: bool = False) -> None:
        self.repo = WebhookRepository(session)
        self.allow_private = allow_private

    async def create(self, me: Principal, body: WebhookEndpointCreate) -> WebhookEndpoint:
        me.require(Role.ADMIN)
        if not self.allow_private:
            check_url(str(body.url))
        endpoint = WebhookEndpoint(
            workspace_id=me.workspace_id,
            url=str(body.url),
            secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            events=sorted(set(body.events)),
            created_by=me.user_id,
        )
        await self.repo.add_endpoint(endpoint)
        return endpoint

    async def list(self, me: Principal) -> list[WebhookEndpoint]:
        me.require(Role.ADMIN)
        return await self.repo.endpoints(me.workspace_id)

    async def delete(self, me: Principal, endpoint_id: uuid.UUID) -> None:
        me.require(Role.ADMIN)
        if not await self.repo.delete_endpoint(me.workspace_id, endpoint_id):
            raise NotFound("no such webhook endpoint")

    async def attempts(
        self, me: Principal, endpoint_id: uuid.UUID, limit: int
    ) -> list[tuple[WebhookAttempt, str]]:
        me.require(Role.ADMIN)
        if await self.repo.endpoint(me.workspace_id, endpoint_id) is None:
            raise NotFound("no such webhook endpoint")
        return await self.repo.attempts(endpoint_id, limit)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    delivered: int
    retried: int
    given_up: int


class WebhookSender:
    """Posts due messages; the periodic task `webhooks.deliver` runs it, and `soon()` runs a
    pass at once after an event was written (so a receiver hears within moments)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        retry_base_seconds: float,
        max_attempts: int,
        timeout: float = 10.0,
        allow_private: bool = False,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.allow_private = allow_private
        self.retry_base = retry_base_seconds
        self.max_attempts = max_attempts
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._soon: set[asyncio.Task[Any]] = set()

    def soon(self) -> None:
        task = asyncio.create_task(self.deliver_due(), name="webhooks-soon")
        self._soon.add(task)
        task.add_done_callback(self._soon.discard)

    async def aclose(self) -> None:
        for task in list(self._soon):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._soon, return_exceptions=True)
        await self.client.aclose()

    async def deliver_due(self, now: datetime | None = None) -> DeliveryReport:
        now = now or utcnow()
        async with self.sessionmaker.begin() as session:
            claimed = await WebhookRepository(session).claim_due(now, now + CLAIM, BATCH)
        results = await asyncio.gather(*(self._deliver(message_id) for message_id in claimed))
        return DeliveryReport(
            delivered=results.count("delivered"),
            retried=results.count("retried"),
            given_up=results.count("given_up"),
        )

    async def _deliver(self, message_id: str) -> str:
        async with self.sessionmaker() as session:
            found = await WebhookRepository(session).message_with_endpoint(message_id)
        if found is None:
            return "gone"
        message, endpoint = found
        body = orjson.dumps(message.payload).decode()
        sent_at = utcnow()
        headers = {
            "content-type": "application/json",
            "webhook-id": message.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Webhook(endpoint.secret).sign(message.id, sent_at, body),
            "user-agent": "Lipika-Webhooks/1",
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            if not self.allow_private and not await resolves_public(endpoint.url):
                error = "refused: the URL's host does not resolve to public addresses only"
            else:
                response = await self.client.post(endpoint.url, content=body, headers=headers)
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"answered {status_code}"
        except httpx.HTTPError as exc:
            error = repr(exc)[:500]
        attempt = message.attempts + 1
        record = WebhookAttempt(
            message_id=message.id,
            attempt=attempt,
            status_code=status_code,
            error=error,
            duration_ms=int((time.perf_counter() - started) * 1000),
        )
        now = utcnow()
        if error is None:
            values: dict[str, Any] = {"attempts": attempt, "delivered_at": now}
            result = "delivered"
        elif attempt >= self.max_attempts:
            values = {"attempts": attempt, "failed_at": now}
            result = "given_up"
            log.warning("webhook_given_up", message=message.id, url=endpoint.url, error=error)
        else:
            delay = self.retry_base * BACKOFF[min(attempt - 1, len(BACKOFF) - 1)]
            values = {"attempts": attempt, "next_attempt_at": now + timedelta(seconds=delay)}
            result = "retried"
        async with self.sessionmaker.begin() as session:
            await WebhookRepository(session).record(message.id, values, record)
        return result
