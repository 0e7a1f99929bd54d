"""Building the payments domain in the lifespan, and its periodic work."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.billing.plans import PlanCatalogue
from lipika.config import Settings
from lipika.payments.demo import DemoGateway
from lipika.payments.notifications import BROWSER_RETURN, IPN, NotificationSource
from lipika.payments.service import Payments
from lipika.payments.sslcommerz import (
    LIVE_URL,
    SANDBOX_URL,
    Gateway,
    GatewayError,
    GatewaySession,
    SSLCommerzClient,
)
from lipika.periodic import PeriodicTasks
from lipika.inbox.service import Inbox


class NoGateway:
    """Production without a store: checkout answers 502 and no notification verifies."""

    name = "none"
    store_id = ""

    def __init__(self) -> None:
        self.store_password = secrets.token_hex(32)

    async def create_session(self, fields: Mapping[str, str]) -> GatewaySession:
        raise GatewayError("no payment gateway is configured (LIPIKA_SSLCOMMERZ_STORE_ID)")

    async def validate(self, val_id: str) -> dict[str, Any]:
        raise GatewayError("no payment gateway is configured")

    async def transactions(self, tran_id: str) -> list[dict[str, Any]]:
        raise GatewayError("no payment gateway is configured")

    async def refund(self, *args: Any) -> dict[str, Any]:
        raise GatewayError("no payment gateway is configured")

    async def refund_status(self, refund_ref_id: str) -> dict[str, Any]:
        raise GatewayError("no payment gateway is configured")

    async def aclose(self) -> None:
        pass


def build_gateway(settings: Settings) -> Gateway:
    if settings.sslcommerz_store_id and settings.sslcommerz_store_password:
        base = settings.sslcommerz_base_url or (
            SANDBOX_URL if settings.sslcommerz_sandbox else LIVE_URL
        )
        return SSLCommerzClient(
            settings.sslcommerz_store_id,
            settings.sslcommerz_store_password.get_secret_value(),
            base_url=base,
        )
    if settings.env == "production":
        return NoGateway()
    return DemoGateway(page_url=settings.public_api_url.rstrip("/") + "/v1/payments/demo")


def build_payments(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    plans: PlanCatalogue,
    inbox: Inbox,
    observe: Callable[[str, str], None] | None = None,
) -> Payments:
    payments = Payments(
        sessionmaker,
        plans,
        build_gateway(settings),
        settings.public_api_url,
        grace=timedelta(seconds=settings.subscription_grace_seconds),
        renewal_notice=timedelta(seconds=settings.subscription_renewal_notice_seconds),
    )
    if observe is not None:
        payments.observe = observe
    inbox.register(NotificationSource(IPN, payments))
    inbox.register(NotificationSource(BROWSER_RETURN, payments))
    return payments


def register_payment_tasks(
    periodic: PeriodicTasks, payments: Payments, inbox: Inbox, settings: Settings
) -> None:
    """Pending orders re-checked with the gateway, subscriptions aged, and deliveries whose
    handling was cut short handled again."""
    recheck = timedelta(seconds=settings.payment_recheck_after_seconds)
    expire = timedelta(seconds=settings.payment_order_expiry_seconds)

    async def pending_payments() -> dict[str, int]:
        return await payments.recheck_pending(recheck, expire)

    async def webhooks() -> dict[str, int]:
        return {"retried": await inbox.retry_unhandled()}

    periodic.register("webhooks", webhooks)
    periodic.register("pending_payments", pending_payments)
    periodic.register("subscriptions", payments.age_subscriptions)
