"""Session tickets: a browser cannot set headers on a WebSocket, so it trades its access token
(in an authenticated POST) for a ticket that opens one session: random, kept in Redis by its
hash only, short-lived, and single-use (read and deleted in one step)."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import orjson
from redis.asyncio import Redis

from lipika.auth.dependencies import Principal
from lipika.workspaces.models import Role, WorkspaceKind


class Tickets:
    def __init__(self, redis: Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def _key(self, ticket: str) -> str:
        return f"{self.prefix}:stt:ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"

    async def issue(self, principal: Principal) -> str:
        ticket = "stt_" + secrets.token_urlsafe(32)
        held = {
            "user_id": str(principal.user_id),
            "workspace_id": str(principal.workspace_id),
            "workspace_kind": principal.workspace_kind.value,
            "role": principal.role.value,
            "session_id": str(principal.session_id) if principal.session_id else None,
            "api_key_id": str(principal.api_key_id) if principal.api_key_id else None,
        }
        await self.redis.set(self._key(ticket), orjson.dumps(held), ex=self.ttl_seconds)
        return ticket

    async def redeem(self, ticket: str) -> Principal | None:
        """The caller the ticket was issued to, once; None if it is unknown, used or expired."""
        if not ticket.startswith("stt_") or len(ticket) > 100:
            return None
        raw = await self.redis.getdel(self._key(ticket))
        if raw is None:
            return None
        held = orjson.loads(raw)
        return Principal(
            user_id=uuid.UUID(held["user_id"]),
            workspace_id=uuid.UUID(held["workspace_id"]),
            workspace_kind=WorkspaceKind(held["workspace_kind"]),
            role=Role(held["role"]),
            session_id=uuid.UUID(held["session_id"]) if held["session_id"] else None,
            api_key_id=uuid.UUID(held["api_key_id"]) if held["api_key_id"] else None,
        )
