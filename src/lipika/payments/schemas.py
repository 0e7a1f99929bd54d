from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lipika.payments.models import OrderKind, OrderState, SubscriptionState

Name = Field(None, min_length=1, max_length=50, pattern=r"^[a-z0-9][a-z0-9_-]*$")


class CheckoutIn(BaseModel):
    """One of: a credit `pack`; a `plan` and `period` (new, renewal or upgrade; `seats` for a
    team plan); or `seats` alone, added to the running team subscription."""

    model_config = ConfigDict(extra="forbid")

    pack: str | None = Name
    plan: str | None = Name
    period: Literal["month", "year"] | None = None
    seats: int | None = Field(None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_offer(self) -> CheckoutIn:
        if self.pack is not None and (self.plan or self.period or self.seats):
            raise ValueError("a pack is bought on its own")
        if self.pack is None and self.plan is None and self.seats is None:
            raise ValueError("name a pack, a plan, or a number of seats")
        return self


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: OrderKind
    item: str
    period: str | None
    seats: int
    amount: str = Field(description="BDT, two decimals, frozen at checkout")
    currency: str
    credits: int = Field(description="micro-credits the order grants when paid")
    tran_id: str
    state: OrderState
    gateway: str
    created_at: datetime
    paid_at: datetime | None
    refund_status: str | None


class CheckoutOut(BaseModel):
    order: OrderOut
    gateway_url: str = Field(description="send the buyer's browser here")


class OrderList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OrderOut]


class RenewalOut(BaseModel):
    due: bool = Field(description="the period ends soon (or has ended): time to renew")
    paid: bool = Field(description="the next period is paid; it starts when this one ends")
    plan: str
    period: str
    seats: int
    amount: str


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    plan: str
    period: str
    state: SubscriptionState
    seats: int
    current_period_start: datetime
    current_period_end: datetime
    grace_until: datetime | None
    next_plan: str | None
    next_seats: int | None
    renewal: RenewalOut | None


class SubscriptionView(BaseModel):
    subscription: SubscriptionOut | None


class SubscriptionChange(BaseModel):
    """From the next period on: a lower plan, or fewer seats."""

    model_config = ConfigDict(extra="forbid")

    plan: str | None = Name
    seats: int | None = Field(None, ge=1, le=10_000)


class RefundIn(BaseModel):
    reason: str = Field(min_length=3, max_length=255)
