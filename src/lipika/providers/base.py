"""The one interface every chat provider implements, and the errors they map theirs to."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal

from lipika.billing.policy import Outcome


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    max_output_tokens: int
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def units(self) -> dict[str, int]:
        """In the price book's units. Cached tokens are billed at the cached rate, not twice."""
        return {
            "input_tokens": self.input_tokens - self.cached_input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    usage: Usage
    finish_reason: Literal["stop", "length"] = "stop"
    provider_request_id: str | None = field(default=None)


class ChatProvider(abc.ABC):
    """One module per provider implements this; the registry maps provider names to instances."""

    name: str

    @property
    def available(self) -> bool:
        """False when the provider is not configured (no API key): listed, but refused."""
        return True

    @abc.abstractmethod
    def estimate_input_tokens(self, request: ChatRequest) -> int:
        """An upper estimate of the input tokens, for the hold placed before the call."""

    @abc.abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResult:
        """One non-streamed completion. Raises a `ProviderError` subclass on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Releases clients the provider holds."""


class ProviderError(Exception):
    """A provider failure, carrying the charge-policy outcome the meter settles with."""

    status_code = 502
    code = "provider_error"
    outcome = Outcome.PROVIDER_ERROR_BEFORE_OUTPUT


class ProviderTimeout(ProviderError):
    status_code = 504
    code = "provider_timeout"
    outcome = Outcome.PROVIDER_TIMEOUT


class ProviderRateLimited(ProviderError):
    status_code = 429
    code = "provider_rate_limited"


class ProviderOverloaded(ProviderError):
    status_code = 503
    code = "provider_overloaded"


class ProviderRejected(ProviderError):
    status_code = 400
    code = "provider_rejected_request"
    outcome = Outcome.REFUSED_BY_PROVIDER


class ProviderAuthFailed(ProviderError):
    status_code = 502
    code = "provider_auth_failed"
