"""SSLCommerz's notifications as webhook sources: the IPN (server to server) and the browser's
return (a cross-site form POST: no cookie, no CSRF token; only the signature and the
validation call make it trustworthy). Both are stored by the inbox before they are handled,
and both lead to the same fulfilment (`Payments.on_notification`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from lipika.payments.service import Payments
from lipika.payments.sslcommerz import verify_sign
from lipika.inbox.service import Delivery, Inbound, body_key

IPN = "sslcommerz"
BROWSER_RETURN = "sslcommerz_return"


def parse_form(body: bytes) -> dict[str, str] | None:
    """The posted strings, exactly as sent (what `verify_sign` covers); None if the body is
    not a form, names a field twice (which copy was signed is then unknowable), or holds a
    NUL character."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    fields = dict(pairs)
    if len(fields) != len(pairs) or any("\x00" in k or "\x00" in v for k, v in pairs):
        return None  # PostgreSQL's text holds no NUL: no lookup may carry one
    return fields


@dataclass
class NotificationSource:
    name: str
    payments: Payments

    def inspect(self, body: bytes, headers: Mapping[str, str]) -> Inbound:
        fields = parse_form(body)
        verified = fields is not None and verify_sign(fields, self.payments.gateway.store_password)
        return Inbound(key=body_key(body), verified=verified)

    async def handle(self, delivery: Delivery) -> str:
        fields = parse_form(delivery.body)
        if fields is None:
            return "malformed"
        return await self.payments.on_notification(fields)
