"""Operator commands behind `lipika payments refund|approve`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lipika import migrate
from lipika.billing.plans import PlanCatalogue
from lipika.billing.pricebook import PriceBook
from lipika.config import Settings
from lipika.db import create_engine, create_sessionmaker
from lipika.payments.errors import OrderNotFound
from lipika.payments.models import Order
from lipika.payments.service import Payments
from lipika.payments.tasks import build_gateway


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Payments]:
    if settings.embedded:
        await asyncio.to_thread(migrate.upgrade, settings.app_db_url)
    engine = create_engine(settings)
    gateway = build_gateway(settings)
    try:
        plans = PlanCatalogue.load(PriceBook.load(settings.pricebook_path), settings.plans_path)
        yield Payments(create_sessionmaker(engine), plans, gateway, settings.public_api_url)
    finally:
        await gateway.aclose()
        await engine.dispose()


async def find_order(payments: Payments, order: str) -> Order:
    """An order by its id or its `tran_id`."""
    try:
        found = await payments.order(uuid.UUID(order))
    except ValueError:
        found = await payments.order_by_tran_id(order)
    if found is None:
        raise OrderNotFound(f"no order {order!r}")
    return found
