"""Browsers on other origins: preflights answered, credentials and our headers allowed."""

from __future__ import annotations

import httpx
import pytest

from lipika.app import create_app
from lipika.config import Settings

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-workspace-id, idempotency-key",
}




async def test_a_local_front_end_may_call_in_development(client: httpx.AsyncClient, signup) -> None:
    preflight = await client.options(
        "/v1/chat/completions", headers={"Origin": "http://localhost:5173", **PREFLIGHT}
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "x-workspace-id", "idempotency-key"):
        assert header in allowed
    account = await signup()
    response = await client.get(
        "/v1/me", headers={**account.headers, "Origin": "http://127.0.0.1:3000"}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://127.0.0.1:3000"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


async def test_other_origins_are_not_allowed(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/v1/chat/completions", headers={"Origin": "https://evil.example", **PREFLIGHT}
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize("env", ["production", "development"])
async def test_configured_origins_only(tmp_path, env: str) -> None:
    settings = Settings(
        data_dir=tmp_path,
        env=env,
        secret_key="s" * 40,
        allow_embedded_in_production=True,
        cors_origins="https://app.example.com, https://admin.example.com/",
        _env_file=None,
    )
    assert settings.cors_allowed == (["https://app.example.com", "https://admin.example.com"], None)
    if env == "production":
        plain = Settings(data_dir=tmp_path, env=env, secret_key="s" * 40, allow_embedded_in_production=True, _env_file=None)
        assert plain.cors_allowed == ([], None)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
        good = await http.options("/v1/me", headers={"Origin": "https://app.example.com", **PREFLIGHT})
        local = await http.options("/v1/me", headers={"Origin": "http://localhost:3000", **PREFLIGHT})
    assert good.status_code == 200 and good.headers["access-control-allow-origin"] == "https://app.example.com"
    assert local.status_code == 400
