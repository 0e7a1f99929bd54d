from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Query, status

from lipika.auth.dependencies import CurrentMember, PathMember, Principal
from lipika.auth.repository import AuthRepository
from lipika.billing.catalogue import catalogue_entries, packs_on_sale, plans_on_sale
from lipika.billing.dependencies import BillingDep, MeterDep
from lipika.billing.models import EntryKind
from lipika.billing.plans import DEFAULT_PLAN
from lipika.billing.policy import (
    CAPTURE_ABOVE_HOLD,
    POLICY,
    SPEECH_SESSIONS,
    STALLED_STREAM,
    USAGE_SO_FAR,
)
from lipika.billing.schemas import (
    BalanceOut,
    CatalogueOut,
    ChargePolicyOut,
    CreditAmount,
    EntryOut,
    EntryPosted,
    LedgerPage,
    MemberCapIn,
    PolicyRow,
    UsageOut,
    UsageRow,
)
from lipika.billing.service import BillingService
from lipika.db import SessionDep, utcnow
from lipika.errors import BadRequest, Forbidden
from lipika.idempotency.dependencies import Idempotent
from lipika.kit.money import to_micro
from lipika.kit.routing import api_router
from lipika.kit.schemas import EntryId, UTCDateTime
from lipika.workspaces.models import Role

router = api_router(tags=["billing"])


@router.get("/v1/billing/balance", response_model=BalanceOut)
async def balance(me: CurrentMember, billing: BillingDep) -> BalanceOut:
    """The workspace's balance, what is held for operations in flight, and what is available."""
    return await _balance(billing, me.workspace_id)


@router.get("/v1/billing/ledger", response_model=LedgerPage)
async def ledger(
    me: CurrentMember,
    billing: BillingDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[EntryId | None, Query(description="entry id; returns older entries")] = None,
    kind: EntryKind | None = None,
    model: str | None = None,
    user_id: uuid.UUID | None = None,
    since: UTCDateTime | None = None,
    until: UTCDateTime | None = None,
) -> LedgerPage:
    """Newest first. Members see their own usage; owners and admins see every entry."""
    rows = await billing.repo.list_entries(
        me.workspace_id,
        limit=limit + 1,
        before=before,
        kind=kind,
        model=model,
        user_id=_visible_user(me, user_id),
        since=since,
        until=until,
    )
    page = [EntryOut.model_validate(row, from_attributes=True) for row in rows[:limit]]
    has_more = len(rows) > limit
    return LedgerPage(data=page, has_more=has_more, next_before=page[-1].id if has_more else None)


@router.get("/v1/billing/usage", response_model=UsageOut)
async def usage(
    me: CurrentMember,
    billing: BillingDep,
    group_by: Literal["model", "member", "day"] = "model",
    since: UTCDateTime | None = None,
    until: UTCDateTime | None = None,
) -> UsageOut:
    """Credits spent and requests made, grouped by model, member or UTC day (default: 30 days)."""
    until = until or utcnow()
    since = since or until - timedelta(days=30)
    if since >= until:
        raise BadRequest("`since` must be before `until`", code="invalid_period")
    if not me.role.at_least(Role.ADMIN) and group_by == "member":
        raise Forbidden("usage by member needs the admin role", code="insufficient_role")
    rows = await billing.repo.usage_summary(
        me.workspace_id, since, until, group_by, user_id=_visible_user(me, None)
    )
    data = [
        UsageRow(
            key=None if r.key is None else str(r.key), requests=r.requests, credits=r.credits or 0
        )
        for r in rows
    ]
    return UsageOut(group_by=group_by, since=since, until=until, data=data)


@router.post(
    "/v1/billing/grants",
    response_model=EntryPosted,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
)
async def grant(
    body: CreditAmount,
    me: CurrentMember,
    billing: BillingDep,
    session: SessionDep,
) -> EntryPosted:
    """Adds credits to the current workspace. Platform operators only (see README)."""
    await _require_operator(me, session)
    amount = _positive_micro(body.amount)
    return await _post(billing, me, EntryKind.GRANT, amount, body)


@router.post(
    "/v1/billing/adjustments",
    response_model=EntryPosted,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
)
async def adjust(
    body: CreditAmount,
    me: CurrentMember,
    billing: BillingDep,
    session: SessionDep,
) -> EntryPosted:
    """A signed correction; a negative one may not take the available balance below zero."""
    await _require_operator(me, session)
    amount = _micro(body.amount)
    if amount == 0:
        raise BadRequest("an adjustment of zero changes nothing", code="invalid_amount")
    return await _post(billing, me, EntryKind.ADJUSTMENT, amount, body)


@router.put(
    "/v1/workspaces/{workspace_id}/members/{user_id}/credit-cap",
    status_code=status.HTTP_204_NO_CONTENT,
)
async def set_member_cap(
    user_id: uuid.UUID, body: MemberCapIn, me: PathMember, billing: BillingDep
) -> None:
    """Caps what one member may spend per calendar month in this workspace (owner/admin)."""
    me.require(Role.ADMIN)
    cap = None if body.monthly_credits is None else _micro(body.monthly_credits)
    if cap is not None and cap < 0:
        raise BadRequest("a cap cannot be negative", code="invalid_amount")
    await billing.set_member_cap(me.workspace_id, user_id, cap)


@router.get("/v1/billing/charge-policy", response_model=ChargePolicyOut)
async def charge_policy() -> ChargePolicyOut:
    """What each outcome of a paid operation costs. Public."""
    return ChargePolicyOut(
        rules=[
            PolicyRow(outcome=r.outcome, charge=r.charge, description=r.why)
            for r in POLICY.values()
        ],
        capture_above_hold=CAPTURE_ABOVE_HOLD,
        usage_so_far=USAGE_SO_FAR,
        stalled_stream=STALLED_STREAM,
        speech_sessions=SPEECH_SESSIONS,
    )


async def _balance(billing: BillingService, workspace_id: uuid.UUID) -> BalanceOut:
    wallet = await billing.wallet(workspace_id)
    return BalanceOut(
        workspace_id=workspace_id,
        plan=wallet.plan,
        balance=wallet.balance,
        held=wallet.held,
        available=wallet.balance - wallet.held,
    )


async def _post(
    billing: BillingService, me: Principal, kind: EntryKind, amount: int, body: CreditAmount
) -> EntryPosted:
    key = f"api:{me.workspace_id}:{body.idempotency_key or uuid.uuid4()}"
    posted = await billing.post(
        me.workspace_id, kind, amount, key, reason=body.reason, user_id=me.user_id
    )
    return EntryPosted(
        entry=EntryOut.model_validate(posted.entry),
        duplicate=posted.duplicate,
        balance=await _balance(billing, me.workspace_id),
    )


async def _require_operator(me: Principal, session: SessionDep) -> None:
    """Minting credits is for the platform's operators, never for a workspace's own admins: a
    verified user whom `lipika operators add` named, acting as an owner or admin, with a user
    login (a leaked API key of an operator must not mint credits)."""
    me.require_login()
    me.require(Role.ADMIN)
    if not await AuthRepository(session).is_verified_operator(me.user_id):
        raise Forbidden("only platform operators can grant or adjust credits", code="operator_only")


def _visible_user(me: Principal, asked: uuid.UUID | None) -> uuid.UUID | None:
    return asked if me.role.at_least(Role.ADMIN) else me.user_id


def _micro(credits: Decimal) -> int:
    try:
        return to_micro(credits)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_amount") from None


def _positive_micro(credits: Decimal) -> int:
    amount = _micro(credits)
    if amount <= 0:
        raise BadRequest("a grant must be positive", code="invalid_amount")
    return amount


@router.get("/v1/billing/catalogue", response_model=CatalogueOut)
async def catalogue(me: CurrentMember, billing: BillingDep, meter: MeterDep) -> CatalogueOut:
    """Every SKU of the price book (models, tools, images, video, research, speech) with its
    units and prices, and whether the plan of the workspace this request acts in allows it;
    and what is sold: the plans' prices (BDT, per month and per year; per seat for team plans)
    and the credit packs."""
    wallet = await billing.wallet(me.workspace_id)
    plan = meter.plans.get(wallet.plan) or meter.plans.get(DEFAULT_PLAN)
    assert plan is not None  # the catalogue refuses to load without the default plan
    return CatalogueOut(
        price_version=meter.price_book.version,
        plan=plan.name,
        data=catalogue_entries(meter.price_book, plan),
        plans=plans_on_sale(meter.plans),
        packs=packs_on_sale(meter.plans),
    )
