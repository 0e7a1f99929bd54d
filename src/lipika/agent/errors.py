"""Why an agent run stopped: each reason has its own stable code and charge-policy outcome."""

from __future__ import annotations

import asyncio

import httpx
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from lipika.billing.policy import Outcome
from lipika.errors import LipikaError
from lipika.providers.base import (
    ProviderAuthFailed,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
)


class RunLimitReached(LipikaError):
    """A per-run limit stopped the run before the next step (the steps before it are paid)."""

    status_code = 429
    type = "rate_limit_error"


class RunStepLimitReached(RunLimitReached):
    code = "run_step_limit"


class RunCreditCapReached(RunLimitReached):
    code = "run_credit_cap"


class StepFailed(LipikaError):
    """A model step failed at the provider; its hold is released under the provider's outcome."""

    type = "api_error"

    def __init__(self, error: ProviderError, message: str, outcome: Outcome) -> None:
        super().__init__(message, code=error.code)
        self.status_code = error.status_code
        self.outcome = outcome


class ToolFailed(LipikaError):
    """A tool raised: its hold is released (our failure is free) and the run ends."""

    status_code = 502
    code = "tool_failed"
    type = "api_error"
    outcome = Outcome.INTERNAL_ERROR


class RunTimedOut(LipikaError):
    """The run outlived the stream budget; the step in flight is released (a timeout is free)."""

    status_code = 504
    code = "provider_timeout"
    type = "api_error"


class RunInternalError(LipikaError):
    status_code = 500
    code = "internal_error"
    type = "api_error"


# LangChain (>= 1.8) classifies every provider's HTTP failures into these; the order matters:
# a context overflow is an invalid request, and both are refusals of the request.
_CLASSIFIED: tuple[tuple[type[BaseException], type[ProviderError]], ...] = (
    (ModelTimeoutError, ProviderTimeout),
    (ModelRateLimitError, ProviderRateLimited),
    (ContextOverflowError, ProviderRejected),
    (ModelInvalidRequestError, ProviderRejected),
    (ModelPermissionDeniedError, ProviderRejected),
    (ModelAuthenticationError, ProviderAuthFailed),
    (ModelAPIError, ProviderOverloaded),
    (ModelConnectionError, ProviderError),
    (ModelNotFoundError, ProviderError),
    (ModelError, ProviderError),
    (httpx.TimeoutException, ProviderTimeout),
    (asyncio.TimeoutError, ProviderTimeout),
)


def step_failed(exc: BaseException, *, produced_output: bool) -> StepFailed:
    """The typed error (and charge outcome) of a model call that raised `exc`."""
    error = exc if isinstance(exc, ProviderError) else _classify(exc)
    outcome = error.outcome_given(produced_output=produced_output)
    message = str(exc).strip() or "the model provider failed"
    return StepFailed(error, message[:500], outcome)


def _classify(exc: BaseException) -> ProviderError:
    for kind, error in _CLASSIFIED:
        if isinstance(exc, kind):
            return error()
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    if status in (400, 404, 413, 422):
        return ProviderRejected()
    if status == 429:
        return ProviderRateLimited()
    return ProviderError()
