from __future__ import annotations

import uuid

from fastapi import status

from lipika.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from lipika.apikeys.service import ApiKeyService
from lipika.auth.dependencies import CurrentMember
from lipika.billing.dependencies import MeterDep
from lipika.db import SessionDep
from lipika.idempotency.dependencies import Idempotent
from lipika.kit.routing import api_router
from lipika.kit.schemas import ListOf

router = api_router(tags=["api keys"])


@router.post(
    "/v1/api-keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
)
async def create_api_key(
    body: ApiKeyCreate, me: CurrentMember, session: SessionDep, meter: MeterDep
) -> ApiKeyCreated:
    """A new key for the current workspace. The secret is in this response and nowhere else.
    Optional: an expiry, the models it may use, and a credit budget of its own.

    Needs a user login: a leaked key must not be able to mint keys that outlive its revocation.
    """
    me.require_login()
    return await ApiKeyService(session).create(me, body, meter.price_book)


@router.get("/v1/api-keys", response_model=ListOf[ApiKeyOut])
async def list_api_keys(
    me: CurrentMember, session: SessionDep, include_revoked: bool = False
) -> ListOf[ApiKeyOut]:
    return ListOf(data=await ApiKeyService(session).list(me, include_revoked=include_revoked))


@router.delete("/v1/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(key_id: uuid.UUID, me: CurrentMember, session: SessionDep) -> None:
    """Revokes at once: the next request with this key is refused."""
    await ApiKeyService(session).revoke(me, key_id)
