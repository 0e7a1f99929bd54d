"""The demo gateway of the embedded default: SSLCommerz's calls answered in process, and a
hosted-page stand-in served by the app (payments/endpoints.py) where a person pays, fails or
cancels. Its notifications are signed like SSLCommerz's and go through the same intake and
fulfilment as real ones; only what the gateway knows (sessions, transactions) lives here, in
memory, for the life of the process."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lipika.payments.sslcommerz import GatewaySession, sign

OUTCOMES = {"pay": "VALID", "fail": "FAILED", "cancel": "CANCELLED"}


@dataclass
class DemoGateway:
    page_url: str  # the hosted page's base URL; the session key is appended
    name: str = "demo"
    store_id: str = "demo"
    store_password: str = field(default_factory=lambda: secrets.token_hex(16))
    sessions: dict[str, dict[str, str]] = field(default_factory=dict)
    by_val_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    validated: set[str] = field(default_factory=set)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_tran_id: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def create_session(self, fields: Mapping[str, str]) -> GatewaySession:
        key = secrets.token_hex(16)
        self.sessions[key] = dict(fields)
        return GatewaySession(f"{self.page_url.rstrip('/')}/{key}", key)

    def session(self, key: str) -> dict[str, str] | None:
        return self.sessions.get(key)

    def complete(self, key: str, action: str) -> tuple[dict[str, str], str]:
        """The person's choice on the hosted page: the signed notification the gateway sends
        (IPN and browser return alike), and the return URL the browser posts it to."""
        fields = self.sessions.pop(key)
        status = OUTCOMES[action]
        notification = {
            "status": status,
            "tran_id": fields["tran_id"],
            "val_id": secrets.token_hex(8) if status == "VALID" else "",
            "amount": fields["total_amount"],
            "store_amount": fields["total_amount"],
            "currency": fields["currency"],
            "currency_type": fields["currency"],
            "currency_amount": fields["total_amount"],
            "bank_tran_id": secrets.token_hex(8) if status == "VALID" else "",
            "tran_date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "card_type": "DEMO",
            "store_id": self.store_id,
            "risk_level": "0",
            "risk_title": "Safe",
            "value_a": fields.get("value_a", ""),
            "error": "" if status == "VALID" else f"demo: {action}",
        }
        record = {**notification, "APIConnect": "DONE"}
        if status == "VALID":
            self.by_val_id[notification["val_id"]] = record
        self.by_tran_id.setdefault(fields["tran_id"], []).append(record)
        url = {"VALID": "success_url", "FAILED": "fail_url", "CANCELLED": "cancel_url"}[status]
        return sign(notification, self.store_password), fields[url]

    async def validate(self, val_id: str) -> dict[str, Any]:
        record = self.by_val_id.get(val_id)
        if record is None:
            return {"status": "INVALID_TRANSACTION", "APIConnect": "DONE"}
        status = "VALIDATED" if val_id in self.validated else "VALID"
        self.validated.add(val_id)
        return {**record, "status": status}

    async def transactions(self, tran_id: str) -> list[dict[str, Any]]:
        return list(self.by_tran_id.get(tran_id, []))

    async def refund(
        self, bank_tran_id: str, amount: str, remarks: str, refund_trans_id: str
    ) -> dict[str, Any]:
        ref = secrets.token_hex(8)
        self.refunds[ref] = {"bank_tran_id": bank_tran_id, "amount": amount}
        return {"APIConnect": "DONE", "status": "success", "refund_ref_id": ref, "errorReason": ""}

    async def refund_status(self, refund_ref_id: str) -> dict[str, Any]:
        if refund_ref_id not in self.refunds:
            return {"APIConnect": "DONE", "status": "failed", "errorReason": "unknown refund"}
        return {"APIConnect": "DONE", "status": "refunded", "refund_ref_id": refund_ref_id}

    async def aclose(self) -> None:
        pass
