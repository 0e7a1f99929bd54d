"""Invariant alarms: a periodic check of what must never happen, exported as metrics and
logged as errors.

- `ledger_drift`: a wallet whose `balance != SUM(entries)` or `held != SUM(open holds)`
  (the same query as `lipika ledger audit`, which lists them);
- `charged_nothing`: a captured hold whose usage has tokens but that charged zero credits;
- `overdue_holds`: an open hold past its expiry by more than the grace (reconciliation should
  have released it: it is not running, or failing);
- `metered_below_usage`: a capture whose provider-reported usage cost more than the hold, so
  the charge was capped (the hold was sized too small);
- `jobs_past_deadline`: a job still queued or running past its deadline by more than the
  grace (its runner fails it at the deadline: nothing is running it, or it is stuck).

The last two look at holds settled in the past day. The check is a task of the periodic loop
(`lipika/periodic.py`): one pod at a time runs it, under the loop's lock; the others clear
their gauges, so `max by (check)` over pods is the truth.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.billing.repository import LedgerRepository
from lipika.config import Settings
from lipika.db import utcnow
from lipika.ops.metrics import Metrics
from lipika.ops.repository import InvariantRepository
from lipika.periodic import PeriodicTasks

log = structlog.get_logger()

RECENT = timedelta(days=1)
SAMPLE = 20  # ids logged per violated check
CHECKS = (
    "ledger_drift",
    "charged_nothing",
    "overdue_holds",
    "metered_below_usage",
    "jobs_past_deadline",
)


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    count: int
    sample: list[dict[str, str]]


@dataclass
class InvariantCheck:
    engine: AsyncEngine
    metrics: Metrics
    overdue_grace: timedelta

    @classmethod
    def for_settings(
        cls, settings: Settings, engine: AsyncEngine, metrics: Metrics
    ) -> InvariantCheck:
        """A hold counts as overdue once reconciliation has had three passes (or five minutes)
        to release it."""
        grace = max(300.0, 3 * settings.reconcile_interval_seconds)
        return cls(engine, metrics, timedelta(seconds=grace))

    async def run_once(self, now: datetime | None = None) -> list[Violation]:
        """Runs every check, sets the gauges, logs each violation; returns the violations."""
        now = now or utcnow()
        async with self.engine.connect() as conn:
            repo = InvariantRepository(conn)
            drift = await LedgerRepository(conn).drift()
            free = [
                row
                for row in await repo.captured_for_nothing(now - RECENT)
                if any(v for k, v in (row.usage or {}).items() if k.endswith("_tokens"))
            ]
            overdue = await repo.overdue_holds(now - self.overdue_grace, 10_000)
            capped = await repo.capped_at_the_hold(now - RECENT, 10_000)
            open_holds = await repo.open_holds()
            late_jobs = await repo.jobs_past_deadline(now - self.overdue_grace, 10_000)
            live_jobs = await repo.live_jobs()
        found = {
            "ledger_drift": [
                {
                    "workspace_id": str(r.workspace_id),
                    "balance": str(r.balance),
                    "ledger": str(int(r.ledger_balance)),
                    "held": str(r.held),
                    "open_holds": str(int(r.open_holds)),
                }
                for r in drift
            ],
            "charged_nothing": [_hold(r, model=r.model) for r in free],
            "overdue_holds": [_hold(r, expires_at=r.expires_at.isoformat()) for r in overdue],
            "metered_below_usage": [
                _hold(r, model=r.model, overage=str(r.overage)) for r in capped
            ],
            "jobs_past_deadline": [
                {
                    "job_id": str(r.id),
                    "workspace_id": str(r.workspace_id),
                    "kind": r.kind,
                    "deadline": r.deadline.isoformat(),
                }
                for r in late_jobs
            ],
        }
        self.metrics.jobs.clear()
        for kind, status, count in live_jobs:
            self.metrics.jobs.labels(kind, str(status)).set(count)
        self.metrics.open_holds.set(open_holds.count)
        age = (now - open_holds.oldest).total_seconds() if open_holds.oldest else 0
        self.metrics.oldest_open_hold_seconds.set(max(age, 0))
        violations = []
        for check in CHECKS:
            rows = found[check]
            self.metrics.invariant_violations.labels(check).set(len(rows))
            if rows:
                violations.append(Violation(check, len(rows), rows[:SAMPLE]))
                log.error("invariant_violated", check=check, count=len(rows), sample=rows[:SAMPLE])
        return violations

    def forget(self) -> None:
        """Clears this pod's gauges while another pod runs the check."""
        for check in CHECKS:
            with contextlib.suppress(KeyError):
                self.metrics.invariant_violations.remove(check)
        self.metrics.open_holds.set(0)
        self.metrics.oldest_open_hold_seconds.set(0)
        self.metrics.jobs.clear()


def _hold(row, **extra: str) -> dict[str, str]:  # noqa: ANN001
    return {"hold_id": str(row.id), "workspace_id": str(row.workspace_id), **extra}


def register_invariant_checks(tasks: PeriodicTasks, check: InvariantCheck, every: float) -> None:
    """Ops' contribution to the periodic loop: the check, once in `every` seconds, on the pod
    holding the loop's lock; the pods sitting out clear their gauges."""

    async def run() -> dict[str, int]:
        try:
            violations = await check.run_once()
        except Exception:
            check.metrics.invariant_checks.labels("failed").inc()
            raise
        check.metrics.invariant_checks.labels("ok").inc()
        return {v.check: v.count for v in violations}

    tasks.register("ops.invariants", run, every=every, idle=check.forget)
