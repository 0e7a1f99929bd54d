"""Password hashing (argon2), access tokens (JWT) and opaque secrets stored only as hashes."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lipika.errors import ServiceUnavailable, Unauthorized

T = TypeVar("T")

# One lane per hash (argon2-cffi's default is four threads): with hashes run one at a time,
# hashing can take at most one core, and the event loop keeps the other. Memory and time cost
# stay at the library's defaults. Hashes made with other parameters still verify: argon2 reads
# them from the hash itself.
_hasher = PasswordHasher(parallelism=1)
# Verified when the email is unknown, so a login takes as long whether or not the user exists.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
_ALGORITHM = "HS256"


class HashingBusy(ServiceUnavailable):
    """More passwords wait for hashing than the queue holds: refused at once, not queued."""

    code = "server_busy"
    retry_after = 1


class PasswordHashing:
    """argon2 on one dedicated thread with a bounded queue (built in the lifespan).

    argon2 is CPU-bound by design (~150 ms per hash here). In the default thread pool a flood
    of logins ran several hashes at once and starved the event loop; here one runs at a time,
    at most `max_waiting` wait, and the rest are refused with 503 `server_busy` and
    `Retry-After` instead of piling up.
    """

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
        self._waiting = 0

    async def hash(self, password: str) -> str:
        return await self._run(_hasher.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """True only for a stored hash that matches; an unknown user (None) costs as much."""

        def verify() -> bool:
            try:
                return _hasher.verify(password_hash or _DUMMY_HASH, password)
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(verify) and password_hash is not None

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        if self._waiting >= self.max_waiting:
            raise HashingBusy("the server is busy checking passwords; retry shortly")
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy random secret (API key, refresh token): enough, and indexable."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID


def encode_access_token(claims: AccessClaims, *, key: str, now: datetime, ttl: timedelta) -> str:
    payload = {
        "sub": str(claims.user_id),
        "sid": str(claims.session_id),
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(payload, key, algorithm=_ALGORITHM)


def decode_access_token(token: str, *, key: str) -> AccessClaims:
    try:
        payload = jwt.decode(
            token, key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub", "sid"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("access token has expired", code="token_expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("invalid access token", code="invalid_token") from None
    if payload.get("typ") != "access":
        raise Unauthorized("invalid access token", code="invalid_token")
    try:
        return AccessClaims(uuid.UUID(payload["sub"]), uuid.UUID(payload["sid"]))
    except (ValueError, TypeError):
        raise Unauthorized("invalid access token", code="invalid_token") from None
