from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lipika.billing.models import EntryKind
from lipika.kit.schemas import Credits


class BalanceOut(BaseModel):
    workspace_id: uuid.UUID
    plan: str
    unit: Literal["micro_credits"] = "micro_credits"
    balance: int
    held: int
    available: int


class EntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: EntryKind
    amount: int
    balance_after: int
    created_at: datetime
    reason: str
    model: str | None
    user_id: uuid.UUID | None
    hold_id: uuid.UUID | None


class LedgerPage(BaseModel):
    object: Literal["list"] = "list"
    unit: Literal["micro_credits"] = "micro_credits"
    data: list[EntryOut]
    has_more: bool
    next_before: int | None = Field(description="pass as `before` to read the next (older) page")


class UsageRow(BaseModel):
    key: str | None
    requests: int
    credits: int


class UsageOut(BaseModel):
    group_by: str
    since: datetime
    until: datetime
    unit: Literal["micro_credits"] = "micro_credits"
    data: list[UsageRow]


class CreditAmount(BaseModel):
    amount: Credits
    reason: str = Field(min_length=3, max_length=500)
    idempotency_key: str | None = Field(None, max_length=150)


class EntryPosted(BaseModel):
    entry: EntryOut
    duplicate: bool = Field(description="true when this idempotency key had already been posted")
    balance: BalanceOut


class MemberCapIn(BaseModel):
    monthly_credits: Credits | None = Field(
        description="credits per calendar month; null removes the cap"
    )


class PolicyRow(BaseModel):
    outcome: str
    charge: str
    description: str


class ChargePolicyOut(BaseModel):
    rules: list[PolicyRow]
    capture_above_hold: str
    usage_so_far: str
    stalled_stream: str
    speech_sessions: str


class SkuOut(BaseModel):
    id: str
    kind: str = Field(description='"model", "call", "image", "video", "research", "stt", ...')
    label: str
    prices: dict[str, int] = Field(description="micro-credits per `per` units of each unit")
    per: dict[str, int] = Field(description="how many units each price is for (tokens: 10^6)")
    allowed: bool = Field(description="whether the caller's plan includes it")
    daily_requests: int | None = Field(description="the plan's daily requests per member")
    daily_units: int | None = Field(description="the plan's daily units per member")


class PlanOfferOut(BaseModel):
    id: str
    label: str
    currency: str = "BDT"
    prices: dict[str, int] = Field(description="paisa per period (`month`, `year`); flat plans")
    seat_prices: dict[str, int] = Field(description="paisa per seat and period; team plans")
    credits_per_period: dict[str, int] = Field(
        description="micro-credits each paid period grants (per seat on a team plan)"
    )
    rank: int = Field(description="a higher rank is an upgrade (prorated now)")


class PackOut(BaseModel):
    id: str
    label: str
    currency: str = "BDT"
    price: int = Field(description="paisa")
    credits: int = Field(description="micro-credits")


class CatalogueOut(BaseModel):
    price_version: str
    plan: str
    data: list[SkuOut]
    plans: list[PlanOfferOut] = Field(description="the plans on sale, with their prices")
    packs: list[PackOut] = Field(description="one-off credit packs")
