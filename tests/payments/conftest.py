"""Payments fixtures: the fake SSLCommerz, a second app on the same databases configured with
its store, that app behind a real HTTP server (for the IPNs the fake posts), and helpers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from lipika.app import create_app
from lipika.config import Settings
from lipika.payments.service import Payments
from tests.fixtures.fakes.sslcommerz import Payment, SSLCommerzFake
from tests.fixtures.live import serve


@pytest.fixture(scope="session")
async def sslcommerz() -> AsyncIterator[SSLCommerzFake]:
    fake = SSLCommerzFake()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture(scope="session")
async def payments_app(settings: Settings, sslcommerz: SSLCommerzFake) -> AsyncIterator[FastAPI]:
    configured = Settings(
        **{
            **settings.model_dump(),
            **sslcommerz.settings_kwargs(),
            "public_api_url": "https://api.lipika.test",
            "public_app_url": "https://app.lipika.test",
            "reconcile_interval_seconds": 3600,
        },
        _env_file=None,
    )
    async with LifespanManager(create_app(configured)) as manager:
        manager.app.lifespan_state = manager._state  # type: ignore[attr-defined]
        yield manager.app


@pytest.fixture(scope="session")
async def payments_url(payments_app: FastAPI, sslcommerz: SSLCommerzFake) -> AsyncIterator[str]:
    async with serve(payments_app) as url:
        sslcommerz.deliver_to = url
        yield url


@pytest.fixture
async def shop(
    payments_app: FastAPI, payments_url: str, client: httpx.AsyncClient, sslcommerz: SSLCommerzFake
) -> AsyncIterator[Shop]:
    """The payments app, its payments service and the fake; tables are emptied by `client`."""
    sslcommerz.reset()
    async with httpx.AsyncClient(base_url=payments_url, timeout=30) as http:
        yield Shop(http, payments_app.lifespan_state["payments"], sslcommerz)  # type: ignore[attr-defined]


@dataclass
class Shop:
    http: httpx.AsyncClient
    payments: Payments
    fake: SSLCommerzFake

    async def checkout(self, headers: dict[str, str], **offer: object) -> dict:
        response = await self.http.post("/v1/billing/checkout", json=offer, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()

    async def browser_return(self, payment: Payment) -> httpx.Response:
        """The buyer's browser posting the gateway's fields back (cross-site: no credentials)."""
        return await self.http.post(
            urlsplit(payment.return_url).path,
            content=payment.body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )

    async def order(self, headers: dict[str, str], order_id: str) -> dict:
        response = await self.http.get(f"/v1/billing/orders/{order_id}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


def workspace(account) -> uuid.UUID:  # noqa: ANN001
    return uuid.UUID(account.personal_workspace_id)


@pytest.fixture
def operator(signup, books):  # noqa: ANN001
    """A verified user recorded as a platform operator (what `lipika operators add` does)."""
    from lipika.auth.models import Operator

    async def make():  # noqa: ANN202
        account = await signup("operator")
        async with books.sessionmaker.begin() as session:
            session.add(Operator(user_id=uuid.UUID(account.user_id), note="tests"))
        return account

    return make


async def paid(shop: Shop, headers: dict[str, str], **offer: object) -> dict:
    """Checks out, pays on the fake's hosted page, delivers the IPN; returns the order."""
    started = await shop.checkout(headers, **offer)
    answer = await shop.fake.send_ipn(shop.fake.complete(started["gateway_url"], "success"))
    assert answer.json()["result"] == "fulfilled", answer.text
    return await shop.order(headers, started["order"]["id"])


@pytest.fixture
def payments_cli(settings: Settings, sslcommerz: SSLCommerzFake, monkeypatch: pytest.MonkeyPatch, tmp_path):  # noqa: ANN001, ANN201
    """`lipika ...` in this process (a worker thread: it calls asyncio.run), with the test's
    databases and the fake SSLCommerz store in its environment."""
    import asyncio
    import os

    from typer.testing import CliRunner

    from lipika import cli
    from tests.billing.conftest import cli_env

    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("LIPIKA_")]:
        monkeypatch.delenv(name)
    env = {k: v for k, v in cli_env(settings).items() if k.startswith("LIPIKA_")}
    env.update({f"LIPIKA_{k.upper()}": str(v) for k, v in sslcommerz.settings_kwargs().items()})

    async def run(*args: str):  # noqa: ANN202
        result = await asyncio.to_thread(CliRunner().invoke, cli.cli, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run
