"""Which gateway the settings give: SSLCommerz with a store (sandbox, live or another host), the
demo gateway in development without one, and none in production without one."""

from __future__ import annotations

import pytest

from lipika.config import Settings
from lipika.payments.demo import DemoGateway
from lipika.payments.sslcommerz import LIVE_URL, SANDBOX_URL, GatewayError, SSLCommerzClient
from lipika.payments.tasks import NoGateway, build_gateway

STORE = {"sslcommerz_store_id": "store1", "sslcommerz_store_password": "secret"}


async def test_a_store_gives_sslcommerz_on_the_chosen_host() -> None:
    for extra, host in (({}, SANDBOX_URL), ({"sslcommerz_sandbox": False}, LIVE_URL), ({"sslcommerz_base_url": "http://127.0.0.1:9"}, "http://127.0.0.1:9")):
        gateway = build_gateway(Settings(**STORE, **extra, _env_file=None))
        assert isinstance(gateway, SSLCommerzClient)
        assert str(gateway._http.base_url).rstrip("/") == host
        await gateway.aclose()


def test_half_a_store_is_refused() -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(sslcommerz_store_id="store1", _env_file=None)


async def test_no_store_is_the_demo_in_development_and_nothing_in_production() -> None:
    assert isinstance(build_gateway(Settings(_env_file=None)), DemoGateway)
    production = Settings(
        env="production", secret_key="s" * 40, allow_embedded_in_production=True, _env_file=None
    )
    gateway = build_gateway(production)
    assert isinstance(gateway, NoGateway)
    with pytest.raises(GatewayError):
        await gateway.create_session({})


async def test_an_unreachable_gateway_is_a_gateway_error() -> None:
    client = SSLCommerzClient("s", "p", base_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(GatewayError):
        await client.validate("x")
    await client.aclose()
