from __future__ import annotations

import httpx


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


async def test_refresh_rotates_and_reuse_revokes_the_session(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    first = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != account.refresh_token
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})).status_code == 200

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
