from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lipika.billing.meter import Meter
from lipika.billing.service import BillingService
from lipika.db import SessionDep


async def get_billing(request: Request, session: SessionDep) -> BillingService:
    return BillingService(session, request.state.meter.plans)


async def get_meter(request: Request) -> Meter:
    return request.state.meter


BillingDep = Annotated[BillingService, Depends(get_billing)]
MeterDep = Annotated[Meter, Depends(get_meter)]
