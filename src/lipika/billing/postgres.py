"""The PostgreSQL side of the meter: batched calls of the ledger functions (migrations 0003, 0007).

Concurrent admissions (and settlements) are coalesced into one call of `lipika_admit_rules_many`
(`lipika_settle_many`): one round trip, one transaction and one commit for all of them, sent in
workspace order, which is the lock order every ledger function follows.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.billing.plans import DEFAULT_PLAN
from lipika.db import utcnow
from lipika.kit.batching import MicroBatcher


class PostgresLedger:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batches_in_flight: int,
        orphan_admitted: Callable[[uuid.UUID], None],
    ) -> None:
        self.engine = engine
        self._orphan_admitted = orphan_admitted
        self._admits: MicroBatcher[dict[str, Any], str] = MicroBatcher(
            self._admit_many, max_in_flight=batches_in_flight, orphan=self._orphan
        )
        self._settles: MicroBatcher[list[Any], list[Any]] = MicroBatcher(
            self._settle_many, max_in_flight=batches_in_flight
        )

    async def admit(self, item: dict[str, Any]) -> str:
        """One `lipika_admit_rules` argument (migration 0007); '' or a refusal."""
        return await self._admits.submit(item)

    async def settle(self, item: list[Any]) -> list[Any]:
        """["capture", id, cost, usage, outcome] or ["release", id, status, outcome]."""
        return await self._settles.submit(item)

    def _orphan(self, item: dict[str, Any], refusal: str) -> None:
        if not refusal:
            self._orphan_admitted(item["id"])

    async def _admit_many(self, items: list[dict[str, Any]]) -> list[str]:
        now = utcnow()
        return await self._in_workspace_order(
            items,
            lambda ordered: self._call(
                "SELECT lipika_admit_rules_many($1::jsonb, $2, $3, $4)",
                orjson.dumps(ordered, default=str).decode(),
                now,
                now.strftime("%Y-%m-%d"),
                DEFAULT_PLAN,
                durable=True,
            ),
            workspace_of=lambda item: str(item["workspace_id"]),
        )

    async def _settle_many(self, items: list[list[Any]]) -> list[list[Any]]:
        async def call(ordered: list[list[Any]]) -> list[list[Any]]:
            results = await self._call(
                "SELECT lipika_settle_many($1::jsonb, $2)",
                orjson.dumps(ordered, default=str).decode(),
                utcnow(),
            )
            # SQLAlchemy's asyncpg connections decode json results already.
            return orjson.loads(results) if isinstance(results, str) else results

        workspaces = await self._workspaces_of([item[1] for item in items])
        return await self._in_workspace_order(
            items, call, workspace_of=lambda item: workspaces.get(str(item[1]), "")
        )

    async def _workspaces_of(self, hold_ids: list[uuid.UUID]) -> dict[str, str]:
        if len(hold_ids) == 1:  # nothing to order
            return {}
        rows = await self._call_rows(
            "SELECT id::text, workspace_id::text FROM holds WHERE id = ANY($1::uuid[])", hold_ids
        )
        return dict(rows)

    @staticmethod
    async def _in_workspace_order(
        items: list[Any],
        call: Callable[[list[Any]], Awaitable[list[Any]]],
        *,
        workspace_of: Callable[[Any], str],
    ) -> list[Any]:
        """Sends a batch ordered by workspace (one lock order for every transaction) and hands the
        results back in the callers' order. A deadlock still reported (by transactions of other
        processes) is retried: the aborted transaction changed nothing."""
        order = sorted(range(len(items)), key=lambda i: workspace_of(items[i]))
        for attempt in range(3):
            try:
                ordered_results = await call([items[i] for i in order])
                break
            except asyncpg.DeadlockDetectedError:
                if attempt == 2:
                    raise
        results: list[Any] = [None] * len(items)
        for position, index in enumerate(order):
            results[index] = ordered_results[position]
        return results

    async def _call(self, sql: str, *args: object, durable: bool = False) -> Any:
        """One statement on a pooled connection's asyncpg driver, in its own implicit transaction.

        `durable`: the statement committed asynchronously (its locks already released); wait until
        its commit is on disk, by committing a transaction with an xid synchronously after it: WAL
        is flushed in order, so that flush covers ours too (and concurrent waiters share fsyncs).
        """
        async with self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            result = await driver.fetchval(sql, *args)
            if durable:
                await driver.fetchval("SELECT txid_current()")
            return result

    async def extend(
        self,
        hold_id: uuid.UUID,
        more: int,
        expires_at: datetime,
        caps: dict[str, int | None],
    ) -> tuple[str, int | None, datetime | None]:
        """`lipika_extend` (migration 0007): (refusal or '', amount, expires_at). Committed
        synchronously: an extension is durable before the caller spends it."""
        now = utcnow()
        async with self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            row = await driver.fetchrow(
                "SELECT * FROM lipika_extend($1, $2, $3, $4, $5::jsonb, $6)",
                hold_id,
                more,
                expires_at,
                now.strftime("%Y-%m-%d"),
                orjson.dumps(caps).decode(),
                DEFAULT_PLAN,
            )
        return row["refusal"], row["amount"], row["expires_at"]

    async def _call_rows(self, sql: str, *args: object) -> list[Any]:
        async with self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            return await driver.fetch(sql, *args)

    async def drain(self) -> None:
        await self._admits.drain()
        await self._settles.drain()
