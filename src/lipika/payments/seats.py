"""How many seats a workspace's subscription pays for: the limit on members (and pending
invitations) that the workspace rules enforce. No subscription, or a flat plan: no limit."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.payments.errors import SeatLimitReached
from lipika.payments.models import RUNNING, Subscription


async def seat_limit(session: AsyncSession, workspace_id: uuid.UUID) -> int | None:
    seats = await session.scalar(
        select(Subscription.seats).where(
            Subscription.workspace_id == workspace_id,
            Subscription.state.in_([s.value for s in RUNNING]),
        )
    )
    return seats or None


def require_seat(limit: int | None, used: int) -> None:
    """Refuses one more seat when `used` (members, pending invitations) already fills them."""
    if limit is not None and used >= limit:
        raise SeatLimitReached(
            f"all {limit} seats of this workspace's subscription are taken; add seats with "
            'POST /v1/billing/checkout {"seats": n} (prorated to the period end), or remove a '
            "member or revoke an invitation",
            seats=limit,
            used=used,
        )
