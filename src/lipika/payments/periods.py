"""Billing periods: calendar months and years, and time-proration within one."""

from __future__ import annotations

import calendar
from datetime import datetime

from lipika.billing.plans import PERIODS


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (the 31st becomes the month's last day)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(start: datetime, period: str) -> datetime:
    return add_months(start, PERIODS[period])


def remaining_fraction(start: datetime, end: datetime, now: datetime) -> tuple[int, int]:
    """(remaining, total) whole seconds of the period [start, end) at `now`."""
    total = max(1, int((end - start).total_seconds()))
    remaining = min(total, max(0, int((end - now).total_seconds())))
    return remaining, total


def prorate_up(amount: int, remaining: int, total: int) -> int:
    """What the rest of a period costs: rounded up (to the paisa)."""
    return -(-amount * remaining // total)


def prorate_down(amount: int, remaining: int, total: int) -> int:
    """What the rest of a period grants: rounded down (to the micro-credit)."""
    return amount * remaining // total
