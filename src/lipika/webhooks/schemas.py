from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

EventType = Literal["job.succeeded", "job.failed", "job.cancelled"]
EVENT_TYPES: tuple[str, ...] = ("job.succeeded", "job.failed", "job.cancelled")


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="https (or http) URL that receives the events")
    events: list[EventType] = Field(
        default_factory=lambda: list(EVENT_TYPES), min_length=1, max_length=len(EVENT_TYPES)
    )


class WebhookEndpointOut(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: uuid.UUID
    url: str
    events: list[str]
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(
        description="the signing secret (Standard Webhooks, `whsec_...`): shown once"
    )


class WebhookAttemptOut(BaseModel):
    message_id: str
    type: str
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    created_at: datetime
