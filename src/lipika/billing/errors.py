"""Why admission refused: each refusal has its own stable code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lipika.errors import Conflict, LipikaError, NotFound
from lipika.kit.money import format_credits


def _seconds_until_next_day() -> float:
    now = datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


def _seconds_until_next_month() -> float:
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    return (following - now).total_seconds()


class InsufficientCredits(LipikaError):
    status_code = 402
    code = "insufficient_credits"
    type = "insufficient_credits"
    should_retry = False

    def __init__(self, needed: int, available: int, message: str | None = None) -> None:
        super().__init__(
            message
            or f"this needs up to {format_credits(needed)} credits; {format_credits(available)} are available",
            needed_micro=needed,
            available_micro=available,
        )


class NotInPlan(LipikaError):
    """The caller's plan does not include this price-book entry (a tool, video, research...)."""

    status_code = 403
    code = "sku_not_in_plan"
    type = "permission_error"
    should_retry = False


class ModelNotInPlan(NotInPlan):
    code = "model_not_in_plan"


class LimitReached(LipikaError):
    """A plan or cap limit: a retry before its period ends is refused again, so clients are
    told not to retry, and when the period ends (`Retry-After`)."""

    status_code = 429
    type = "rate_limit_error"
    should_retry = False


class DailyLimitReached(LimitReached):
    @property  # type: ignore[override]
    def retry_after(self) -> float:
        return _seconds_until_next_day()


class DailyRequestLimitReached(DailyLimitReached):
    code = "daily_request_limit"


class DailyUnitLimitReached(DailyLimitReached):
    code = "daily_unit_limit"


class DailyCreditCapReached(DailyLimitReached):
    code = "daily_credit_cap"


class MemberMonthlyCapReached(LimitReached):
    code = "member_monthly_cap"

    @property  # type: ignore[override]
    def retry_after(self) -> float:
        return _seconds_until_next_month()


class KeyBudgetExhausted(LipikaError):
    """The API key's own credit budget cannot hold this request (the workspace may still have
    credits: another key, or a raised budget, can spend them)."""

    status_code = 402
    code = "api_key_budget_exceeded"
    type = "insufficient_quota"
    should_retry = False


class ModelNotAllowedForKey(LipikaError):
    status_code = 403
    code = "model_not_allowed_for_key"
    type = "permission_error"
    should_retry = False


class DuplicateRequest(Conflict):
    """The idempotency key was used already: the same request again is refused again."""

    code = "duplicate_request"
    should_retry = False


class UnknownPrice(NotFound):
    code = "model_not_found"


class WalletMissing(LipikaError):
    status_code = 409
    code = "wallet_missing"
