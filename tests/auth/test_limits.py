"""Abuse limits: failed logins per account and per address, sign-ups per address, on counters
that every app instance on the same Redis shares."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import redis.asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from lipika.app import create_app
from lipika.config import Settings

ACCOUNT_WINDOW_SECONDS = 8
TIGHT = {
    "login_failure_limits_per_account": f"3/{ACCOUNT_WINDOW_SECONDS}second;10/hour",
    "login_failure_limits_per_address": "8/minute;50/day",
    "signup_limits_per_address": "3/hour",
}
_addresses = itertools.count(1)


def new_address() -> str:
    """A client address of the test's own (the counters outlive a test within the module)."""
    return f"10.{next(_addresses)}.{uuid.uuid4().int % 250}.7"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app


@pytest.fixture(scope="module")
def tight_settings(settings: Settings) -> Settings:
    """The suite's settings (same databases and Redis) with tight limits, a counter prefix of
    this module's own, and small pools (the PostgreSQL is shared with other test runs)."""
    prefix = f"{settings.redis_key_prefix}-tight-{uuid.uuid4().hex[:8]}"
    changes = {**TIGHT, "redis_key_prefix": prefix, "db_pool_size": 4, "checkpoint_pool_size": 2}
    return Settings(**{**settings.model_dump(), **changes}, _env_file=None)


@pytest.fixture(scope="module")
async def tight_app(tight_settings: Settings) -> AsyncIterator[FastAPI]:
    async with running(tight_settings) as app:
        yield app
    if tight_settings.redis_url:  # the hour and day windows would stay in the shared Redis
        shared = redis.asyncio.Redis.from_url(tight_settings.redis_url)
        async for key in shared.scan_iter(match=f"{tight_settings.redis_key_prefix}:*"):
            await shared.delete(key)
        await shared.aclose()


Caller = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def caller(tight_app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[Caller]:
    """Clients of the tight app from a given address (tables are emptied after the test, by
    `client`)."""
    opened: list[httpx.AsyncClient] = []

    def make(address: str, app: FastAPI = tight_app) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        http = httpx.AsyncClient(transport=transport, base_url="http://lipika.test")
        opened.append(http)
        return http

    yield make
    for http in opened:
        await http.aclose()


async def login(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post("/v1/auth/login", json={"email": email, "password": password})


def assert_too_many(response: httpx.Response, most_seconds: int) -> int:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_attempts")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= most_seconds + 1
    return retry_after


async def test_a_flood_of_wrong_passwords_from_one_address_gets_429(caller: Caller, signup) -> None:
    victims = [await signup("victim") for _ in range(8)]  # one failure each: no account locks
    attacker = caller(new_address())
    answers = [await login(attacker, victim.email, "a guess") for victim in victims]
    assert [a.status_code for a in answers] == [401] * 8
    # Any account, even one not tried yet, even the right password: the address is spent.
    assert_too_many(await login(attacker, victims[0].email, "guess 9"), 60)
    assert_too_many(await login(attacker, "nobody@example.com", "guess 10"), 60)
    assert_too_many(await login(attacker, victims[1].email, victims[1].password), 60)
    # Another address is not affected.
    assert (await login(caller(new_address()), victims[2].email, victims[2].password)).status_code == 200


async def test_a_locked_account_refuses_even_the_right_password_until_its_window_passes(
    caller: Caller, signup
) -> None:
    account = await signup("locked")
    for _ in range(3):  # from three addresses: only the account's limit is reached
        wrong = await login(caller(new_address()), account.email, "not the password")
        assert wrong.status_code == 401
    locked = await login(caller(new_address()), account.email, account.password)
    retry_after = assert_too_many(locked, ACCOUNT_WINDOW_SECONDS)
    # The same limit for the e-mail whatever its case, and for an address never used before.
    assert_too_many(
        await login(caller(new_address()), account.email.upper(), account.password),
        ACCOUNT_WINDOW_SECONDS,
    )

    await asyncio.sleep(retry_after)
    after = await login(caller(new_address()), account.email, account.password)
    assert after.status_code == 200, (retry_after, after.text)


async def test_concurrent_guesses_never_get_past_a_full_window_together(caller: Caller, signup) -> None:
    """Each guess is counted before its password is hashed: twenty at once get three tries."""
    account = await signup("raced")
    answers = await asyncio.gather(
        *(login(caller(new_address()), account.email, f"guess {i}") for i in range(20))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * 3 + [429] * 17


async def test_right_passwords_are_not_counted(caller: Caller, signup) -> None:
    account = await signup("regular")
    http = caller(new_address())
    for _ in range(10):
        assert (await login(http, account.email, account.password)).status_code == 200


async def test_unknown_accounts_lock_like_known_ones(caller: Caller) -> None:
    """The limit does not tell whether an address is registered."""
    email = f"ghost-{uuid.uuid4().hex[:8]}@example.com"
    for _ in range(3):
        assert (await login(caller(new_address()), email, "whatever1")).status_code == 401
    assert_too_many(await login(caller(new_address()), email, "whatever1"), ACCOUNT_WINDOW_SECONDS)


async def test_sign_ups_per_address_are_limited(caller: Caller) -> None:
    farm = caller(new_address())

    async def sign_up(http: httpx.AsyncClient) -> httpx.Response:
        email = f"farm-{uuid.uuid4().hex[:10]}@example.com"
        return await http.post("/v1/auth/signup", json={"email": email, "password": "a long password"})

    assert [(await sign_up(farm)).status_code for _ in range(3)] == [202] * 3
    assert_too_many(await sign_up(farm), 3600)
    assert (await sign_up(caller(new_address()))).status_code == 202


@pytest.mark.postgres
async def test_two_app_instances_on_one_redis_count_against_the_same_limit(
    caller: Caller, tight_settings: Settings, signup
) -> None:
    account = await signup("shared")
    address = new_address()
    async with running(tight_settings) as second_app:
        replicas = [caller(address), caller(address, second_app)]
        for i in range(3):
            assert (await login(replicas[i % 2], account.email, "wrong")).status_code == 401
        for replica in replicas:
            assert_too_many(await login(replica, account.email, account.password), ACCOUNT_WINDOW_SECONDS)


def test_limits_in_the_wrong_syntax_are_refused() -> None:
    with pytest.raises(ValueError, match="LIPIKA_LOGIN_FAILURE_LIMITS_PER_ACCOUNT"):
        Settings(login_failure_limits_per_account="five a minute", _env_file=None)
