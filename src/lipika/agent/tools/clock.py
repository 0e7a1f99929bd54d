"""The current date and time, in UTC or in a named time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from lipika.agent.tools.base import AgentTool, ToolInputError


class ClockInput(BaseModel):
    timezone: str = Field(
        "UTC", max_length=64, description="An IANA time zone name, e.g. `Asia/Dhaka`; default UTC."
    )


def now_in(timezone: str, now: datetime | None = None) -> str:
    """`2026-11-27T09:30:00+06:00 (Friday, Asia/Dhaka)`."""
    try:
        zone = UTC if timezone.upper() == "UTC" else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolInputError(f"unknown time zone {timezone!r}; use an IANA name") from None
    local = (now or datetime.now(UTC)).astimezone(zone).replace(microsecond=0)
    return f"{local.isoformat()} ({local:%A}, {timezone})"


async def current_time(timezone: str = "UTC") -> str:
    return now_in(timezone)


TOOL = AgentTool(
    StructuredTool.from_function(
        coroutine=current_time,
        name="clock",
        description="The current date, time and weekday, in UTC or a given IANA time zone.",
        args_schema=ClockInput,
    ),
    price="agent.clock",
)
