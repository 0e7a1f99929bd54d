"""The errors every provider adapter maps its own to: facts about a failure (which kind, the
HTTP status and stable code we answer it with). Which charge-policy outcome a failure is, is
billing's to say (`billing.session.outcome_of`), not the provider's."""

from __future__ import annotations


class ProviderError(Exception):
    """A provider failure: the HTTP status and stable code we answer it with."""

    status_code = 502
    code = "provider_error"


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
