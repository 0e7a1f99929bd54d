"""The inbox: verify, store once (insert, on conflict do nothing), then handle.

A source (payment notifications, research callbacks) says how to read its deliveries: whether a
body verifies (signature, freshness), which key makes two copies the same delivery, which
headers to keep; and it handles a stored, verified delivery. The inbox does the rest the same
way for every source: a delivery is durable before anything acts on it, a copy already stored
changes nothing, a forged or stale one is stored (for the record) but never handled, and each
outcome is counted. Handlers must be idempotent: a delivery whose handling was cut short (the
handler failed, or the process died between the store and the end of the handler) is handled
again by `retry_unhandled`, from the periodic loop; the sender is answered as soon as the
delivery is stored, so its own retries are replays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.db import utcnow
from lipika.inbox.repository import DeliveryRepository

log = structlog.get_logger()

# What happened at intake, the label of the deliveries counter (bounded).
ACCEPTED, FORGED, REPLAYED, STALE = "accepted", "forged", "replayed", "stale"
# The result of an accepted delivery whose handler failed: kept, handled again later.
DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class Inbound:
    """A source's reading of a delivery before it is stored."""

    key: str
    verified: bool
    stale: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A stored delivery, as its handler sees it."""

    id: int
    source: str
    body: bytes
    headers: Mapping[str, str]
    received_at: datetime


class WebhookSource(Protocol):
    name: str

    def inspect(self, body: bytes, headers: Mapping[str, str]) -> Inbound:
        """Verifies the delivery and names its key; never raises for a malformed body (it
        simply does not verify)."""

    async def handle(self, delivery: Delivery) -> str:
        """Acts on a verified delivery, idempotently; returns a result from a fixed set."""


@dataclass(frozen=True, slots=True)
class Receipt:
    intake: str  # ACCEPTED, FORGED, REPLAYED or STALE
    delivery_id: int | None
    result: str | None  # the handler's result, for accepted deliveries


def body_key(body: bytes) -> str:
    """The default delivery key: the body itself (a replay is the same bytes)."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def stored_text(body: bytes) -> str:
    """The body as text the database can hold (PostgreSQL's text holds no NUL). A body that
    verifies is valid UTF-8 without NULs (sources refuse others), so it is kept exactly."""
    return body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class Observer(Protocol):
    def received(self, source: str, intake: str) -> None: ...

    def handled(self, source: str, result: str) -> None: ...


class _Unobserved:
    def received(self, source: str, intake: str) -> None:
        pass

    def handled(self, source: str, result: str) -> None:
        pass


@dataclass
class Inbox:
    sessionmaker: async_sessionmaker[AsyncSession]
    observer: Observer = field(default_factory=_Unobserved)
    sources: dict[str, WebhookSource] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow

    def register(self, source: WebhookSource) -> None:
        if source.name in self.sources:
            raise ValueError(f"a webhook source named {source.name!r} is already registered")
        self.sources[source.name] = source

    async def receive(self, source_name: str, body: bytes, headers: Mapping[str, str]) -> Receipt:
        source = self.sources[source_name]
        inbound = source.inspect(body, headers)
        intake = (
            ACCEPTED
            if inbound.verified and not inbound.stale
            else (STALE if inbound.stale else FORGED)
        )
        async with self.sessionmaker.begin() as session:
            delivery_id = await DeliveryRepository(session).store_once(
                source=source_name,
                # A delivery that does not verify never takes a genuine one's key (a forger who
                # knows the next delivery id must not make the real delivery a "replay").
                delivery_key=(inbound.key if intake == ACCEPTED else f"{intake}:{body_key(body)}")[
                    :200
                ],
                body=stored_text(body),
                headers=dict(inbound.headers),
                received_at=self.clock(),
                verified=intake == ACCEPTED,
                handled_at=None if intake == ACCEPTED else self.clock(),
                result=None if intake == ACCEPTED else intake,
            )
        if delivery_id is None:
            intake = REPLAYED
        self.observer.received(source_name, intake)
        if intake != ACCEPTED:
            if intake != REPLAYED:
                log.warning("webhook_refused", source=source_name, intake=intake)
            return Receipt(intake, delivery_id, None)
        assert delivery_id is not None
        delivery = Delivery(delivery_id, source_name, body, dict(inbound.headers), self.clock())
        try:
            result = await self._handle(source, delivery)
        except Exception:  # noqa: BLE001 - stored: `retry_unhandled` handles it again
            log.exception("webhook_handling_failed", source=source_name, delivery_id=delivery_id)
            return Receipt(ACCEPTED, delivery_id, DEFERRED)
        return Receipt(ACCEPTED, delivery_id, result)

    async def _handle(self, source: WebhookSource, delivery: Delivery) -> str:
        result = await source.handle(delivery)
        async with self.sessionmaker.begin() as session:
            await DeliveryRepository(session).mark_handled(delivery.id, result, self.clock())
        self.observer.handled(source.name, result)
        return result

    async def retry_unhandled(self, older_than: timedelta = timedelta(minutes=2)) -> int:
        """Handles again the verified deliveries whose handling never finished (periodic)."""
        async with self.sessionmaker() as session:
            pending = await DeliveryRepository(session).unhandled(self.clock() - older_than, 100)
        done = 0
        for row in pending:
            source = self.sources.get(row.source)
            if source is None:
                continue
            delivery = Delivery(
                row.id, row.source, row.body.encode(), dict(row.headers or {}), row.received_at
            )
            try:
                await self._handle(source, delivery)
            except Exception:  # noqa: BLE001 - one bad delivery must not stop the others
                log.exception("webhook_retry_failed", source=row.source, delivery_id=row.id)
                continue
            done += 1
        return done
