from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.live import serve


@pytest.fixture(scope="session")
async def live_url(app: FastAPI) -> AsyncIterator[str]:
    """The session's app on a real socket."""
    async with serve(app) as url:
        yield url


@pytest.fixture
async def api_key(client: httpx.AsyncClient, signup) -> str:
    """An `lpk_` key of a fresh account on the Pro plan's models (the free plan by default)."""
    account = await signup()
    response = await client.post("/v1/api-keys", json={"name": "sdk"}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["key"]


@pytest.fixture(scope="session")
async def provider_live_url(provider_app: FastAPI) -> AsyncIterator[str]:
    async with serve(provider_app) as url:
        yield url
