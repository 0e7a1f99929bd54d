"""API keys: workspace credentials that act as their creator, with the creator's role.

Members manage their own keys; owners and admins see and revoke every key of the workspace.
Like a gateway's virtual keys, a key may expire, be held to a list of models, and have a
credit budget of its own, enforced at admission by the one rule engine (billing/rules.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from lipika.apikeys.models import ApiKey
from lipika.apikeys.repository import ApiKeyRepository
from lipika.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from lipika.auth.dependencies import API_KEY_PREFIX, Principal
from lipika.auth.security import hash_secret, new_secret
from lipika.billing.pricebook import PriceBook
from lipika.billing.repository import LedgerRepository
from lipika.billing.rules import KeyLimits, key_spend_counter
from lipika.db import utcnow
from lipika.errors import BadRequest, NotFound
from lipika.kit.money import to_micro
from lipika.workspaces.models import Role

_DISPLAY_PREFIX_LEN = len(API_KEY_PREFIX) + 8


@dataclass
class ApiKeyService:
    session: AsyncSession

    @property
    def repo(self) -> ApiKeyRepository:
        return ApiKeyRepository(self.session)

    async def create(
        self, member: Principal, body: ApiKeyCreate, price_book: PriceBook
    ) -> ApiKeyCreated:
        if body.expires_at is not None and body.expires_at <= utcnow():
            raise BadRequest("expires_at must be in the future", code="invalid_expiry")
        models = None
        if body.allowed_models is not None:
            models = sorted(set(body.allowed_models))
            unknown = [m for m in models if (p := price_book.get(m)) is None or p.kind != "model"]
            if unknown:
                raise BadRequest(
                    f"allowed_models names models the price book lacks: {unknown}",
                    code="model_not_found",
                    models=unknown,
                )
        budget = None
        if body.credit_budget is not None:
            try:
                budget = to_micro(body.credit_budget)
            except ValueError as exc:
                raise BadRequest(str(exc), code="invalid_amount") from None
            if budget <= 0:
                raise BadRequest("credit_budget must be more than zero", code="invalid_amount")
        secret = new_secret(API_KEY_PREFIX)
        key = ApiKey(
            workspace_id=member.workspace_id,
            user_id=member.user_id,
            name=body.name,
            prefix=secret[:_DISPLAY_PREFIX_LEN],
            key_hash=hash_secret(secret),
            expires_at=body.expires_at,
            allowed_models=models,
            credit_budget=budget,
        )
        await self.repo.add(key)
        return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)

    async def list(self, member: Principal, *, include_revoked: bool) -> list[ApiKeyOut]:
        keys = await self.repo.list(
            member.workspace_id, user_id=self._only_own(member), include_revoked=include_revoked
        )
        used = await LedgerRepository(self.session).counter_values(
            [key_spend_counter(k.id) for k in keys]
        )
        return [
            ApiKeyOut.model_validate(k).model_copy(
                update={"credits_used": used.get(key_spend_counter(k.id), 0)}
            )
            for k in keys
        ]

    async def revoke(self, member: Principal, key_id: uuid.UUID) -> None:
        key = await self.repo.get(member.workspace_id, key_id)
        if key is None or (self._only_own(member) not in (None, key.user_id)):
            raise NotFound("API key not found")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            await self.session.flush()

    @staticmethod
    def _only_own(member: Principal) -> uuid.UUID | None:
        return None if member.role.at_least(Role.ADMIN) else member.user_id


def key_limits(member: Principal) -> KeyLimits | None:
    """What the caller's API key allows, for admission (None: not a key)."""
    if member.api_key_id is None:
        return None
    return KeyLimits(member.api_key_id, member.key_models, member.key_budget)
