"""SSLCommerz API v4: an async client of our own on httpx, and the IPN signature.

The Python libraries published for SSLCommerz are synchronous (requests), and two of them get
the IPN hash wrong (one hashes parsed values instead of the posted strings, one refuses a
first-time `VALID`), so this is a small client over the documented calls: session, order
validation, transaction query, refund and refund status. Every answer is JSON.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

SANDBOX_URL = "https://sandbox.sslcommerz.com"
LIVE_URL = "https://securepay.sslcommerz.com"
SESSION_PATH = "/gwprocess/v4/api.php"
VALIDATION_PATH = "/validator/api/validationserverAPI.php"
TRANSACTION_PATH = "/validator/api/merchantTransIDvalidationAPI.php"

VALID_STATUSES = frozenset({"VALID", "VALIDATED"})


class GatewayError(Exception):
    """The gateway could not be reached or refused the call."""


@dataclass(frozen=True, slots=True)
class GatewaySession:
    gateway_url: str
    session_key: str


class Gateway(Protocol):
    """What checkout, fulfilment, reconciliation and refunds need of a payment gateway."""

    name: str
    store_id: str
    store_password: str

    async def create_session(self, fields: Mapping[str, str]) -> GatewaySession: ...

    async def validate(self, val_id: str) -> dict[str, Any]: ...

    async def transactions(self, tran_id: str) -> list[dict[str, Any]]: ...

    async def refund(
        self, bank_tran_id: str, amount: str, remarks: str, refund_trans_id: str
    ) -> dict[str, Any]: ...

    async def refund_status(self, refund_ref_id: str) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def signed_string(fields: Mapping[str, str], store_password: str) -> str | None:
    """The string `verify_sign` is the MD5 of: the fields `verify_key` names, plus the MD5 of
    the store password, sorted by name, joined raw (not URL-encoded). None if a named field is
    missing or `verify_key` is absent."""
    keys = [k for k in fields.get("verify_key", "").split(",") if k]
    if not keys or any(k not in fields for k in keys):
        return None
    parts = {k: fields[k] for k in keys}
    parts["store_passwd"] = _md5(store_password)
    return "&".join(f"{k}={parts[k]}" for k in sorted(parts))


def verify_sign(fields: Mapping[str, str], store_password: str) -> bool:
    """Whether a posted notification was signed with this store's password (raw strings)."""
    text = signed_string(fields, store_password)
    sign = fields.get("verify_sign", "")
    return (
        text is not None
        and bool(sign)
        and hmac.compare_digest(_md5(text).encode(), sign.lower().encode())
    )


def sign(fields: Mapping[str, str], store_password: str) -> dict[str, str]:
    """The fields with `verify_key` and `verify_sign` added, as the gateway posts them (the
    demo gateway and the tests' fake sign this way)."""
    signed = {k: v for k, v in fields.items() if k not in ("verify_key", "verify_sign")}
    signed["verify_key"] = ",".join(signed)
    text = signed_string(signed, store_password)
    assert text is not None
    signed["verify_sign"] = _md5(text)
    return signed


class SSLCommerzClient:
    name = "sslcommerz"

    def __init__(
        self,
        store_id: str,
        store_password: str,
        *,
        base_url: str,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store_id = store_id
        self.store_password = store_password
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    def _credentials(self) -> dict[str, str]:
        return {"store_id": self.store_id, "store_passwd": self.store_password, "format": "json"}

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise GatewayError(f"SSLCommerz {path}: {exc!r}") from exc
        if not isinstance(body, dict):
            raise GatewayError(f"SSLCommerz {path}: the answer is not an object")
        return body

    async def create_session(self, fields: Mapping[str, str]) -> GatewaySession:
        body = await self._call("POST", SESSION_PATH, data={**fields, **self._credentials()})
        url, key = body.get("GatewayPageURL"), body.get("sessionkey")
        if body.get("status") != "SUCCESS" or not url or not key:
            raise GatewayError(f"SSLCommerz refused the session: {body.get('failedreason')!r}")
        return GatewaySession(str(url), str(key))

    async def validate(self, val_id: str) -> dict[str, Any]:
        params = {"val_id": val_id, "v": "1", **self._credentials()}
        return await self._call("GET", VALIDATION_PATH, params=params)

    async def transactions(self, tran_id: str) -> list[dict[str, Any]]:
        body = await self._call(
            "GET", TRANSACTION_PATH, params={"tran_id": tran_id, **self._credentials()}
        )
        elements = body.get("element") or []
        return [e for e in elements if isinstance(e, dict)]

    async def refund(
        self, bank_tran_id: str, amount: str, remarks: str, refund_trans_id: str
    ) -> dict[str, Any]:
        params = {
            "bank_tran_id": bank_tran_id,
            "refund_amount": amount,
            "refund_remarks": remarks,
            "refund_trans_id": refund_trans_id,
            **self._credentials(),
        }
        return await self._call("GET", TRANSACTION_PATH, params=params)

    async def refund_status(self, refund_ref_id: str) -> dict[str, Any]:
        params = {"refund_ref_id": refund_ref_id, **self._credentials()}
        return await self._call("GET", TRANSACTION_PATH, params=params)

    async def aclose(self) -> None:
        await self._http.aclose()
