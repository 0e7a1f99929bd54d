"""Password hashing (argon2), access tokens (JWT) and opaque secrets stored only as hashes."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lipika.errors import Unauthorized

_hasher = PasswordHasher()
# Verified when the email is unknown, so a login takes as long whether or not the user exists.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
_ALGORITHM = "HS256"


async def hash_password(password: str) -> str:
    # argon2 is CPU-bound by design (~50 ms): keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    def verify() -> bool:
        try:
            return (
                _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


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
