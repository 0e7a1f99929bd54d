"""Why a payment request was refused: each refusal has its own stable code."""

from __future__ import annotations

from lipika.errors import BadRequest, Conflict, LipikaError, NotFound


class UnknownOffer(BadRequest):
    code = "unknown_offer"


class AmountBelowMinimum(BadRequest):
    code = "amount_below_gateway_minimum"


class GatewayUnavailable(LipikaError):
    status_code = 502
    code = "payment_gateway_error"
    type = "api_error"


class OrderNotFound(NotFound):
    pass


class SubscriptionConflict(Conflict):
    code = "subscription_conflict"


class NotRefundable(Conflict):
    code = "order_not_refundable"


class SeatLimitReached(LipikaError):
    status_code = 402
    code = "seat_limit_reached"
    type = "insufficient_seats"
    should_retry = False
