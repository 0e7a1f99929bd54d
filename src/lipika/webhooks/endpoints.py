"""`/v1/webhook-endpoints`: a workspace's outbound webhooks (admins and owners)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, status

from lipika.auth.dependencies import CurrentMember, SettingsDep
from lipika.db import SessionDep
from lipika.kit.routing import api_router
from lipika.kit.schemas import ListOf
from lipika.webhooks.schemas import (
    WebhookAttemptOut,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointOut,
)
from lipika.webhooks.service import WebhookService

router = api_router(tags=["webhooks"])


@router.post(
    "/v1/webhook-endpoints",
    response_model=WebhookEndpointCreated,
    status_code=status.HTTP_201_CREATED,
)
async def create_webhook_endpoint(
    body: WebhookEndpointCreate, me: CurrentMember, session: SessionDep, settings: SettingsDep
) -> WebhookEndpointCreated:
    """Registers a URL for job events (a public host; 400 `webhook_url_not_public` otherwise);
    the signing secret is in this response only."""
    service = WebhookService(session, allow_private=settings.webhook_private_urls_allowed)
    endpoint = await service.create(me, body)
    return WebhookEndpointCreated.model_validate(endpoint, from_attributes=True)


@router.get("/v1/webhook-endpoints", response_model=ListOf[WebhookEndpointOut])
async def list_webhook_endpoints(
    me: CurrentMember, session: SessionDep
) -> ListOf[WebhookEndpointOut]:
    endpoints = await WebhookService(session).list(me)
    return ListOf(
        data=[WebhookEndpointOut.model_validate(e, from_attributes=True) for e in endpoints]
    )


@router.delete("/v1/webhook-endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook_endpoint(
    endpoint_id: uuid.UUID, me: CurrentMember, session: SessionDep
) -> None:
    await WebhookService(session).delete(me, endpoint_id)


@router.get(
    "/v1/webhook-endpoints/{endpoint_id}/attempts", response_model=ListOf[WebhookAttemptOut]
)
async def list_webhook_attempts(
    endpoint_id: uuid.UUID,
    me: CurrentMember,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ListOf[WebhookAttemptOut]:
    """Every delivery attempt to the endpoint, newest first."""
    rows = await WebhookService(session).attempts(me, endpoint_id, limit)
    return ListOf(
        data=[
            WebhookAttemptOut(
                message_id=a.message_id,
                type=kind,
                attempt=a.attempt,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
                created_at=a.created_at,
            )
            for a, kind in rows
        ]
    )
