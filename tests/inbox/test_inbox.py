"""The inbound-webhook inbox, with a source of its own: verify, store once, then handle; forged,
stale and replayed deliveries are stored (or found) and never handled; a delivery whose
handling was cut short is handled again."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import select

from lipika.inbox.models import WebhookDelivery
from lipika.inbox.service import Delivery, Inbound, Inbox
from tests.fixtures.ledger import Books

SECRET = b"test-secret"


@dataclass
class SignedSource:
    """HMAC over the body, a delivery id header, a timestamp that may be stale."""

    name: str = "test"
    handled: list[bytes] = field(default_factory=list)
    fail_next: bool = False

    def inspect(self, body: bytes, headers: Mapping[str, str]) -> Inbound:
        good = hmac.compare_digest(
            hmac.new(SECRET, body, hashlib.sha256).hexdigest(), headers.get("signature", "")
        )
        return Inbound(
            key=headers.get("delivery-id", ""),
            verified=good,
            stale=good and headers.get("stale") == "yes",
            headers={"delivery-id": headers.get("delivery-id", "")},
        )

    async def handle(self, delivery: Delivery) -> str:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("handler died")
        self.handled.append(delivery.body)
        return "done"


@dataclass
class Counted:
    intakes: collections.Counter = field(default_factory=collections.Counter)

    def received(self, source: str, intake: str) -> None:
        self.intakes[(source, intake)] += 1

    def handled(self, source: str, result: str) -> None:
        self.intakes[(source, f"handled:{result}")] += 1


def _headers(body: bytes, delivery: str, **extra: str) -> dict[str, str]:
    return {
        "signature": hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
        "delivery-id": delivery,
        **extra,
    }


@pytest.fixture
def inbox(books: Books) -> tuple[Inbox, SignedSource, Counted]:
    counted = Counted()
    inbox = Inbox(books.sessionmaker, counted)
    source = SignedSource()
    inbox.register(source)
    return inbox, source, counted


async def _rows(books: Books) -> list[WebhookDelivery]:
    async with books.sessionmaker() as session:
        return list(
            (await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all()
        )


async def test_a_delivery_is_stored_once_and_handled_once(inbox, books: Books) -> None:  # noqa: ANN001
    box, source, counted = inbox
    body = b'{"event": "done"}'
    first = await box.receive("test", body, _headers(body, "d-1"))
    again = await box.receive("test", body, _headers(body, "d-1"))
    assert (first.intake, first.result, again.intake, again.result) == (
        "accepted",
        "done",
        "replayed",
        None,
    )
    assert source.handled == [body]
    [row] = await _rows(books)
    assert (row.source, row.delivery_key, row.body, row.verified, row.result) == (
        "test",
        "d-1",
        body.decode(),
        True,
        "done",
    )
    assert row.headers == {"delivery-id": "d-1"} and row.handled_at is not None
    assert counted.intakes[("test", "replayed")] == 1


async def test_forged_and_stale_deliveries_are_kept_but_never_handled(inbox, books: Books) -> None:  # noqa: ANN001
    box, source, counted = inbox
    body = b'{"event": "done"}'
    forged = await box.receive("test", body, {"signature": "0" * 64, "delivery-id": "d-2"})
    stale = await box.receive("test", body, _headers(body, "d-3", stale="yes"))
    assert (forged.intake, stale.intake) == ("forged", "stale")
    assert source.handled == []
    rows = await _rows(books)
    assert [(r.delivery_key.split(":")[0], r.verified, r.result) for r in rows] == [
        ("forged", False, "forged"),
        ("stale", False, "stale"),
    ]
    genuine = await box.receive("test", body, _headers(body, "d-2"))  # the id the forger used
    assert (genuine.intake, genuine.result) == ("accepted", "done")
    assert counted.intakes[("test", "forged")] == counted.intakes[("test", "stale")] == 1


async def test_concurrent_copies_are_handled_once(inbox, books: Books) -> None:  # noqa: ANN001
    box, source, _ = inbox
    body = b'{"event": "race"}'
    receipts = await asyncio.gather(
        *(box.receive("test", body, _headers(body, "d-4")) for _ in range(20))
    )
    assert collections.Counter(r.intake for r in receipts) == {"accepted": 1, "replayed": 19}
    assert source.handled == [body]


async def test_a_handling_cut_short_is_handled_again(inbox, books: Books) -> None:  # noqa: ANN001
    box, source, _ = inbox
    body = b'{"event": "crash"}'
    source.fail_next = True
    cut = await box.receive("test", body, _headers(body, "d-5"))
    assert (cut.intake, cut.result) == ("accepted", "deferred")
    assert (await box.receive("test", body, _headers(body, "d-5"))).intake == "replayed"
    assert await box.retry_unhandled(older_than=timedelta(hours=1)) == 0  # too recent
    assert await box.retry_unhandled(older_than=timedelta(0)) == 1
    assert source.handled == [body]
    assert await box.retry_unhandled(older_than=timedelta(0)) == 0
    [row] = await _rows(books)
    assert row.result == "done"


async def test_a_source_registers_once(inbox) -> None:  # noqa: ANN001
    box, _, _ = inbox
    with pytest.raises(ValueError):
        box.register(SignedSource())
