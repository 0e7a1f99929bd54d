from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field

MAX_BIGINT = 2**63 - 1

T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    """A list response, `{"object": "list", "data": [...]}`, the shape OpenAI clients expect."""

    object: str = "list"
    data: list[T]


# Bounded request values. Every number a client sends has a range the code and the database can
# hold, so an absurd value is a 422 naming the field, never an overflow deep inside a handler.
# Credit amounts are range-checked where they become micro-credits (`kit.money.to_micro`, 400
# `invalid_amount` naming the limit), which is safe for any exponent.
Credits = Annotated[
    Decimal,
    Field(allow_inf_nan=False, description="credits (not micro-credits); up to 6 decimal places"),
]
MAX_TOKENS = 2**31 - 1  # above every model's ceiling (requests are capped to it), inside int32
TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
StepCount = Annotated[int, Field(ge=1, le=1000)]
EntryId = Annotated[int, Field(ge=1, le=MAX_BIGINT)]


def _as_utc(value: datetime) -> datetime:
    """A time without a zone is read as UTC (every period boundary here is UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Years 1000..9000 leave room for the arithmetic done on periods (± days) on either side.
UTCDateTime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    Field(ge=datetime(1000, 1, 1, tzinfo=UTC), le=datetime(9000, 1, 1, tzinfo=UTC)),
]
