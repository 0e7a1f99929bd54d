from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import update

from lipika.auth.models import RefreshToken
from lipika.auth.security import hash_secret
from lipika.db import utcnow


async def test_signup_login_me(client: httpx.AsyncClient, signup) -> None:
    account = await signup("ana")
    me = (await client.get("/v1/me", headers=account.headers)).json()
    assert me["user"]["email"] == account.email
    assert me["workspace"]["kind"] == "personal"
    assert me["workspace"]["role"] == "owner"
    assert me["via"] == "access_token"

    login = await client.post("/v1/auth/login", json={"email": account.email.upper(), "password": account.password})
    assert login.status_code == 200
    assert login.json()["user"]["id"] == account.user_id


async def test_bad_credentials(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    wrong = await client.post("/v1/auth/login", json={"email": account.email, "password": "wrong password"})
    unknown = await client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_missing_and_garbage_tokens(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/me")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_credentials"
    garbage = await client.get("/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert garbage.status_code == 401
    assert garbage.json()["error"]["code"] == "invalid_token"
    basic = await client.get("/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


async def _past_the_grace(books, refresh_token: str) -> None:
    """Moves a used refresh token's use back beyond the grace window (as if time had passed)."""
    async with books.sessionmaker.begin() as session:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == hash_secret(refresh_token))
            .values(used_at=utcnow() - timedelta(minutes=5))
        )


async def test_refresh_rotates_and_reuse_revokes_the_session(client: httpx.AsyncClient, signup, books) -> None:
    account = await signup()
    first = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != account.refresh_token
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})).status_code == 200

    await _past_the_grace(books, account.refresh_token)
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "refresh_token_reused"
    # The replay revoked the whole login: the rotated tokens are dead too.
    after = await client.get("/v1/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_revoked"
    dead = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert dead.status_code == 401


async def test_unknown_refresh_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/refresh", json={"refresh_token": "lrt_nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_refresh_token"


async def test_logout_refuses_the_access_token_at_once(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    other_login = (await client.post("/v1/auth/login", json={"email": account.email, "password": account.password})).json()
    assert (await client.post("/v1/auth/logout", headers=account.headers)).status_code == 204
    assert (await client.get("/v1/me", headers=account.headers)).status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 401
    # Another login of the same user is untouched by a plain logout ...
    other = {"Authorization": f"Bearer {other_login['access_token']}"}
    assert (await client.get("/v1/me", headers=other)).status_code == 200
    # ... and ended by logout of all sessions.
    assert (await client.post("/v1/auth/logout", json={"all_sessions": True}, headers=other)).status_code == 204
    assert (await client.get("/v1/me", headers=other)).status_code == 401


async def test_expired_access_token(client: httpx.AsyncClient, signup, settings) -> None:
    import uuid
    from datetime import timedelta

    from lipika.auth.security import AccessClaims, encode_access_token
    from lipika.db import utcnow

    account = await signup()
    token = encode_access_token(
        AccessClaims(uuid.UUID(account.user_id), uuid.uuid4()),
        key=settings.signing_key,
        now=utcnow() - timedelta(hours=1),
        ttl=timedelta(minutes=15),
    )
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


async def test_token_signed_with_another_key_is_refused(client: httpx.AsyncClient, signup) -> None:
    import uuid
    from datetime import timedelta

    from lipika.auth.security import AccessClaims, encode_access_token
    from lipika.db import utcnow

    account = await signup()
    forged = encode_access_token(
        AccessClaims(uuid.UUID(account.user_id), uuid.uuid4()), key="x" * 48, now=utcnow(), ttl=timedelta(minutes=5)
    )
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


async def test_two_tabs_refreshing_at_once_get_the_same_pair(client: httpx.AsyncClient, signup) -> None:
    """Within the grace window a just-rotated refresh token returns the pair it was rotated to,
    so two tabs refreshing together both stay logged in (and share one login)."""
    account = await signup()
    body = {"refresh_token": account.refresh_token}
    answers = await asyncio.gather(*(client.post("/v1/auth/refresh", json=body) for _ in range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, second = (a.json() for a in answers)
    assert first == second
    later = await client.post("/v1/auth/refresh", json=body)
    assert later.json() == first
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert me.status_code == 200
    # The pair rotates on as usual.
    onward = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert onward.status_code == 200 and onward.json()["refresh_token"] != first["refresh_token"]
