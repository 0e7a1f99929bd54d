from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lipika.ratelimits.service import PlanRateLimits


async def get_rate_limits(request: Request) -> PlanRateLimits:
    return request.state.rate_limits


RateLimitsDep = Annotated[PlanRateLimits, Depends(get_rate_limits)]
