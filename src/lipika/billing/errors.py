"""Why admission refused: each refusal has its own stable code."""

from __future__ import annotations

from lipika.errors import LipikaError, NotFound
from lipika.kit.money import format_credits


class InsufficientCredits(LipikaError):
    status_code = 402
    code = "insufficient_credits"
    type = "insufficient_credits"

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


class ModelNotInPlan(NotInPlan):
    code = "model_not_in_plan"


class LimitReached(LipikaError):
    status_code = 429
    type = "rate_limit_error"


class DailyRequestLimitReached(LimitReached):
    code = "daily_request_limit"


class DailyUnitLimitReached(LimitReached):
    code = "daily_unit_limit"


class DailyCreditCapReached(LimitReached):
    code = "daily_credit_cap"


class MemberMonthlyCapReached(LimitReached):
    code = "member_monthly_cap"


class UnknownPrice(NotFound):
    code = "model_not_found"


class WalletMissing(LipikaError):
    status_code = 409
    code = "wallet_missing"
