"""The errors every provider adapter maps its own to: facts about a failure (which kind, the
HTTP status and stable code we answer it with). Which charge-policy outcome a failure is, is
billing's to say (`billing.session.outcome_of`), not the provider's."""

from __future__ import annotations

import contextlib
import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime


class ProviderError(Exception):
    """A provider failure: the HTTP status and stable code we answer it with, and the
    provider's own hint of when to try again (seconds), if it gave one."""

    status_code = 502
    code = "provider_error"

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    status_code = 504
    code = "provider_timeout"


class ProviderRateLimited(ProviderError):
    status_code = 429
    code = "provider_rate_limited"


class ProviderOverloaded(ProviderError):
    status_code = 503
    code = "provider_overloaded"


class ProviderRejected(ProviderError):
    status_code = 400
    code = "provider_rejected_request"


class ProviderAuthFailed(ProviderError):
    status_code = 502
    code = "provider_auth_failed"


# How the providers' HTTP statuses read, for every adapter; anything else is a `ProviderError`.
STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: ProviderRejected,
    401: ProviderAuthFailed,
    403: ProviderAuthFailed,
    404: ProviderRejected,
    422: ProviderRejected,
    429: ProviderRateLimited,
    503: ProviderOverloaded,
    529: ProviderOverloaded,
}


def retry_hint(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from a provider's response headers: `retry-after-ms` (OpenAI's and
    Anthropic's SDKs read it first), else `retry-after` in seconds or as an HTTP date, else
    the earliest of Anthropic's `anthropic-ratelimit-*-reset` times (RFC 3339)."""
    if not headers:
        return None
    if (ms := _number(headers.get("retry-after-ms"))) is not None:
        return ms / 1000
    if (value := headers.get("retry-after")) is not None:
        if (seconds := _number(value)) is not None:
            return seconds
        with contextlib.suppress(TypeError, ValueError, IndexError):
            return _until(email.utils.parsedate_to_datetime(value))
    resets = []
    for name, value in headers.items():
        if name.lower().startswith("anthropic-ratelimit-") and name.lower().endswith("-reset"):
            with contextlib.suppress(ValueError):
                resets.append(_until(datetime.fromisoformat(value.replace("Z", "+00:00"))))
    return min(resets) if resets else None


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and 0 <= number < 86_400 else None


def _until(moment: datetime) -> float:
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
