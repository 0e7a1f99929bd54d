"""Password hashing runs one hash at a time on its own thread, behind a bounded queue."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher

from lipika.auth.security import HashingBusy, PasswordHashing


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    hashing = PasswordHashing(max_waiting=2)
    try:
        outcomes = await asyncio.gather(
            *(hashing.verify("a guess", None) for _ in range(3)), return_exceptions=True
        )
        assert outcomes[:2] == [False, False]
        busy = outcomes[2]
        assert isinstance(busy, HashingBusy)
        assert (busy.status_code, busy.code, busy.type) == (503, "server_busy", "api_error")
        assert busy.headers()["Retry-After"] == "1"
        # Once the queue drains, hashing works again.
        assert await hashing.verify("a guess", await hashing.hash("a guess"))
    finally:
        hashing.close()


async def test_hashes_made_with_other_parameters_still_verify() -> None:
    """Hashes stored before hashing moved to one lane (argon2-cffi's defaults: four)."""
    hashing = PasswordHashing(max_waiting=4)
    try:
        stored = PasswordHasher().hash("correct horse battery")
        assert "p=4" in stored
        assert await hashing.verify("correct horse battery", stored)
        assert not await hashing.verify("wrong horse battery", stored)
        assert "p=1" in await hashing.hash("correct horse battery")
    finally:
        hashing.close()


async def test_an_unknown_account_never_verifies() -> None:
    hashing = PasswordHashing(max_waiting=1)
    try:
        assert not await hashing.verify("not-a-real-password", None)
    finally:
        hashing.close()
