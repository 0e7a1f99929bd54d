from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from lipika.kit.schemas import Credits, UTCDateTime


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    expires_at: UTCDateTime | None = Field(
        None, description="after this time the key is refused (401 `api_key_expired`)"
    )
    allowed_models: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None,
        max_length=100,
        description="the only chat models the key may use (default: every model of the plan)",
    )
    credit_budget: Credits | None = Field(
        None, description="the most the key may spend in its life, in credits (default: none)"
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None
    allowed_models: list[str] | None
    credit_budget: int | None = Field(description="micro-credits; null: no budget")
    credits_used: int = Field(
        0, description="micro-credits the key has spent, and holds for requests in flight"
    )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown only in this response; store it now.")
