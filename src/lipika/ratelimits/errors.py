from __future__ import annotations

from typing import Any

from lipika.errors import LipikaError


class RateLimited(LipikaError):
    """A plan's requests or tokens per minute are used up: the same request works once the
    window starts again (`Retry-After`), so the SDKs may retry it."""

    status_code = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"
    should_retry = True

    def __init__(self, message: str, *, limit_headers: dict[str, str], **details: Any) -> None:
        super().__init__(message, **details)
        self.limit_headers = limit_headers

    def headers(self) -> dict[str, str]:
        return {**super().headers(), **self.limit_headers}
