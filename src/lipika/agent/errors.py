"""Why an agent run stopped: each reason has its own stable code and charge-policy outcome."""

from __future__ import annotations

from lipika.billing.policy import Outcome
from lipika.billing.session import outcome_of
from lipika.errors import LipikaError
from lipika.providers.base import ProviderError


class RunLimitReached(LipikaError):
    """A per-run limit stopped the run before the next step (the steps before it are paid)."""

    status_code = 429
    should_retry = False
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


def step_failed(error: ProviderError, *, produced_output: bool) -> StepFailed:
    """The typed error (and charge outcome) of a model call whose provider failed."""
    outcome = outcome_of(error, produced_output=produced_output)
    message = str(error).strip() or "the model provider failed"
    return StepFailed(error, message[:500], outcome)
