"""Checkout, orders and subscriptions (members of a workspace), the gateway's notifications
(public, verified by signature and validation), the demo gateway's hosted page, and the
operators' approve and refund."""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import Path, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from lipika.auth.dependencies import CurrentMember, Principal
from lipika.auth.repository import AuthRepository
from lipika.config import Settings
from lipika.db import SessionDep
from lipika.errors import Forbidden, NotFound
from lipika.kit.routing import api_router
from lipika.payments.demo import OUTCOMES, DemoGateway
from lipika.payments.dependencies import InboxDep, PaymentsDep
from lipika.payments.errors import OrderNotFound, SubscriptionConflict
from lipika.payments.models import Order, Subscription
from lipika.payments.notifications import BROWSER_RETURN, IPN, parse_form
from lipika.payments.pricing import Offer, format_amount
from lipika.payments.schemas import (
    CheckoutIn,
    CheckoutOut,
    OrderList,
    OrderOut,
    RefundIn,
    RenewalOut,
    SubscriptionChange,
    SubscriptionOut,
    SubscriptionView,
)
from lipika.payments.service import Buyer, Payments
from lipika.workspaces.models import Role
from lipika.workspaces.repository import WorkspaceRepository

router = api_router(tags=["payments"])

FORM_BODY = {
    "requestBody": {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        }
    }
}
MAX_FORM_BYTES = 64 * 1024


def order_out(order: Order) -> OrderOut:
    return OrderOut.model_validate(
        {
            **{c: getattr(order, c) for c in OrderOut.model_fields if hasattr(order, c)},
            "amount": format_amount(order.amount_minor),
        }
    )


def subscription_out(payments: Payments, sub: Subscription, now: datetime) -> SubscriptionOut:
    renewal = None
    if sub.state.value in ("active", "past_due"):
        offer = payments.renewal_offer(sub)
        try:
            quote = payments.quote(offer, sub, now)
            renewal = RenewalOut(
                due=payments.renewal_due(sub, now),
                paid=sub.renewal_order_id is not None,
                plan=quote.item,
                period=quote.period or sub.period,
                seats=quote.seats,
                amount=format_amount(quote.amount),
            )
        except SubscriptionConflict:
            renewal = None
    return SubscriptionOut(
        id=sub.id,
        plan=sub.plan,
        period=sub.period,
        state=sub.state,
        seats=sub.seats,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        grace_until=sub.current_period_end + payments.grace
        if sub.state.value == "past_due"
        else None,
        next_plan=sub.next_plan,
        next_seats=sub.next_seats,
        renewal=renewal,
    )


async def _buyer(me: Principal, session: SessionDep) -> Buyer:
    me.require(Role.ADMIN)
    user = await AuthRepository(session).user_by_id(me.user_id)
    await session.commit()
    return Buyer(
        me.workspace_id, me.user_id, user.email if user else "", (user.name or "") if user else ""
    )


@router.post(
    "/v1/billing/checkout", response_model=CheckoutOut, status_code=status.HTTP_201_CREATED
)
async def checkout(
    body: CheckoutIn, me: CurrentMember, session: SessionDep, payments: PaymentsDep
) -> CheckoutOut:
    """Starts a payment (owner or admin): a credit pack, a plan and period (a renewal or a
    prorated upgrade when the workspace already subscribes), or more seats (prorated). The
    order's amount is frozen now; send the browser to `gateway_url`."""
    buyer = await _buyer(me, session)
    order, url = await payments.checkout(
        buyer, Offer(pack=body.pack, plan=body.plan, period=body.period, seats=body.seats)
    )
    return CheckoutOut(order=order_out(order), gateway_url=url)


@router.get("/v1/billing/orders", response_model=OrderList)
async def list_orders(me: CurrentMember, payments: PaymentsDep) -> OrderList:
    """The workspace's orders, newest first (owner or admin)."""
    me.require(Role.ADMIN)
    return OrderList(data=[order_out(o) for o in await payments.orders(me.workspace_id)])


@router.get("/v1/billing/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: uuid.UUID, me: CurrentMember, payments: PaymentsDep) -> OrderOut:
    """One order of the workspace, with its state (what the return page shows)."""
    order = await payments.order(order_id)
    if order is None or order.workspace_id != me.workspace_id:
        raise OrderNotFound("no such order")
    me.require(Role.ADMIN)
    return order_out(order)


@router.get("/v1/billing/subscription", response_model=SubscriptionView)
async def get_subscription(me: CurrentMember, payments: PaymentsDep) -> SubscriptionView:
    """The workspace's subscription, if any, with its renewal (what paying next buys, and
    whether it is due: the renewal link for the front end to show or mail)."""
    sub = await payments.subscription(me.workspace_id)
    return SubscriptionView(
        subscription=None if sub is None else subscription_out(payments, sub, payments.clock())
    )


@router.post("/v1/billing/subscription/renewal", response_model=CheckoutOut, status_code=201)
async def renew(me: CurrentMember, session: SessionDep, payments: PaymentsDep) -> CheckoutOut:
    """A checkout for the next period (SSLCommerz has no recurring charge: each period is a
    payment). Owner or admin."""
    buyer = await _buyer(me, session)
    sub = await payments.subscription(me.workspace_id)
    if sub is None or sub.state.value not in ("active", "past_due"):
        raise SubscriptionConflict("this workspace has no subscription to renew; check out a plan")
    if sub.renewal_order_id is not None:
        raise SubscriptionConflict(
            "the next period is already paid; it starts when this one ends",
            code="renewal_already_paid",
        )
    offer = payments.renewal_offer(sub)
    members = len(await WorkspaceRepository(session).members(me.workspace_id))
    await session.commit()
    if offer.seats is not None and offer.seats < members:
        raise SubscriptionConflict(
            f"the next period has {offer.seats} seats and the workspace has {members} members: "
            "remove members first (they are never removed for you), or keep more seats",
            code="seats_in_use",
            seats=offer.seats,
            members=members,
        )
    order, url = await payments.checkout(buyer, offer)
    return CheckoutOut(order=order_out(order), gateway_url=url)


@router.post("/v1/billing/subscription/change", response_model=SubscriptionView)
async def change_subscription(
    body: SubscriptionChange, me: CurrentMember, payments: PaymentsDep
) -> SubscriptionView:
    """A downgrade or fewer seats, from the next period (its renewal) on. Owner or admin."""
    me.require(Role.ADMIN)
    sub = await payments.schedule_change(me.workspace_id, body.plan, body.seats)
    return SubscriptionView(subscription=subscription_out(payments, sub, payments.clock()))


@router.post("/v1/billing/subscription/cancel", response_model=SubscriptionView)
async def cancel_subscription(me: CurrentMember, payments: PaymentsDep) -> SubscriptionView:
    """Cancels at period end (owner): the plan runs until then, then the free plan."""
    me.require(Role.OWNER)
    sub = await payments.cancel(me.workspace_id)
    return SubscriptionView(subscription=subscription_out(payments, sub, payments.clock()))


# -- the gateway's notifications (public) -------------------------------------------------------


async def _form(request: Request) -> bytes:
    body = await request.body()
    return body[:MAX_FORM_BYTES]


@router.post("/v1/payments/sslcommerz/ipn", openapi_extra=FORM_BODY)
async def sslcommerz_ipn(request: Request, inbox: InboxDep) -> JSONResponse:
    """SSLCommerz's Instant Payment Notification. Stored before it is handled; a forged or
    repeated one changes nothing. Always 200 once stored, so the gateway stops retrying."""
    receipt = await inbox.receive(IPN, await _form(request), {})
    return JSONResponse({"status": receipt.intake, "result": receipt.result})


@router.post("/v1/payments/sslcommerz/return/{outcome}", openapi_extra=FORM_BODY)
async def sslcommerz_return(
    outcome: Literal["success", "fail", "cancel"],
    request: Request,
    inbox: InboxDep,
    payments: PaymentsDep,
) -> RedirectResponse:
    """The buyer's browser back from the gateway (a cross-site form POST): handled as a
    notification, then redirected to the front end with the order's state."""
    body = await _form(request)
    await inbox.receive(BROWSER_RETURN, body, {})
    fields = parse_form(body) or {}
    order = await payments.order_by_tran_id(fields.get("tran_id", ""))
    settings: Settings = request.state.settings
    query = {"outcome": outcome}
    if order is not None:
        query["order"] = str(order.id)
    query["state"] = order.state.value if order is not None else "unknown"
    return RedirectResponse(
        f"{settings.payment_return_link}?{urlencode(query)}", status_code=status.HTTP_303_SEE_OTHER
    )


# -- the demo gateway's hosted page (embedded default only) -------------------------------------


def _demo(payments: Payments) -> DemoGateway:
    if not isinstance(payments.gateway, DemoGateway):
        raise NotFound("not found")
    return payments.gateway


@router.get("/v1/payments/demo/{session_key}", response_class=HTMLResponse)
async def demo_page(
    session_key: Annotated[str, Path(max_length=64)], payments: PaymentsDep
) -> HTMLResponse:
    """The demo gateway's hosted page: pay, fail or cancel (no money moves)."""
    fields = _demo(payments).session(session_key)
    if fields is None:
        raise NotFound("no such payment session")
    buttons = "".join(f'<button name="action" value="{a}">{a.title()}</button> ' for a in OUTCOMES)
    page = (
        "<!doctype html><title>Demo payment</title><h1>Demo gateway</h1>"
        "<p>No money moves: this stands in for SSLCommerz's payment page.</p>"
        f"<p>{html.escape(fields.get('product_name', ''))}: "
        f"{html.escape(fields['total_amount'])} {html.escape(fields['currency'])}</p>"
        f'<form method="post">{buttons}</form>'
    )
    return HTMLResponse(page)


@router.post(
    "/v1/payments/demo/{session_key}", response_class=HTMLResponse, openapi_extra=FORM_BODY
)
async def demo_pay(
    session_key: Annotated[str, Path(max_length=64)],
    request: Request,
    payments: PaymentsDep,
    inbox: InboxDep,
) -> HTMLResponse:
    """The person's choice: the gateway's signed IPN goes through the same intake as
    SSLCommerz's, then the browser is sent back with the same fields, as a form POST."""
    demo = _demo(payments)
    action = (parse_form(await _form(request)) or {}).get("action", "")
    if demo.session(session_key) is None or action not in OUTCOMES:
        raise NotFound("no such payment session")
    notification, return_url = demo.complete(session_key, action)
    body = urlencode(notification).encode()
    await inbox.receive(IPN, body, {})
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in notification.items()
    )
    return HTMLResponse(
        "<!doctype html><title>Returning</title>"
        f'<form id="back" method="post" action="{html.escape(return_url)}">{inputs}'
        "<button>Continue</button></form>"
        "<script>document.getElementById('back').submit()</script>"
    )


# -- operators ---------------------------------------------------------------------------------


async def _require_platform_operator(me: Principal, session: SessionDep) -> None:
    me.require_login()
    if not await AuthRepository(session).is_verified_operator(me.user_id):
        raise Forbidden("only platform operators can do this", code="operator_only")
    await session.commit()


@router.post("/v1/operator/orders/{order_id}/approve", response_model=OrderOut)
async def approve_order(
    order_id: uuid.UUID, me: CurrentMember, session: SessionDep, payments: PaymentsDep
) -> OrderOut:
    """Delivers a payment held for its risk level. Platform operators only."""
    await _require_platform_operator(me, session)
    if await payments.order(order_id) is None:
        raise OrderNotFound("no such order")
    return order_out(await payments.approve(order_id))


@router.post("/v1/operator/orders/{order_id}/refund", response_model=OrderOut)
async def refund_order(
    order_id: uuid.UUID,
    body: RefundIn,
    me: CurrentMember,
    session: SessionDep,
    payments: PaymentsDep,
) -> OrderOut:
    """Refunds a paid or held order through the gateway and takes back its credits (what is
    left of them; see docs/payments.md). Platform operators only."""
    await _require_platform_operator(me, session)
    return order_out(await payments.refund(order_id, body.reason))
