"""The metering session: one paid operation, admitted, then settled exactly once however it ends.

Every paid path (non-streamed and streamed chat, the agent's model and tool steps, and next
jobs and speech sessions) runs inside one:

    async with meter.session(workspace_id, user_id, operation="chat.completion", price=model,
                             max_usage={"input_tokens": 900, "output_tokens": 512}) as call:
        async for event in provider.stream(request):
            ...                          # call.deliver(text) once it reached the client
            call.report(usage)           # the provider's own (cumulative) count, when it gives one
        await call.succeed()

The call site says what it did and what it used; the session owns the rest, written once:

- the settlement runs in a task of its own and is awaited through `asyncio.shield`, so the
  cancellation a disconnect delivers (or a second one) cannot interrupt it;
- leaving the block settles what is still open, by the one exception->outcome table
  (`outcome_of`): a provider's failure before or after output, a timeout, a cancellation;
- the one usage-so-far rule (`usage_so_far`): the provider's count where it gave one, else the
  hold's input estimate and the output delivered, never nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

import structlog
from orjson import dumps

from lipika.billing.policy import Outcome
from lipika.billing.pricebook import cost_of
from lipika.kit.sse import ClientGone
from lipika.providers.base import (
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ToolCall,
    Usage,
)

if TYPE_CHECKING:
    from lipika.billing.meter import Extension, Meter, Settlement, Ticket

log = structlog.get_logger()

CHARS_PER_TOKEN = 4  # English runs near four characters a token: the estimate of delivered text


def outcome_of(
    exc: BaseException, *, produced_output: bool, stopped: Outcome | None = None
) -> Outcome:
    """The charge-policy outcome of whatever ended a metered operation: the one table.

    Providers report facts (which error, and the session knows whether output was produced);
    only this maps them to outcomes. `stopped` is why the caller cancelled the operation, when
    it did (a run past its budget); a cancellation without one is the client leaving.
    """
    if isinstance(exc, asyncio.CancelledError | GeneratorExit | ClientGone):
        return stopped or Outcome.CLIENT_DISCONNECT
    if not isinstance(exc, ProviderError) and isinstance(exc.__cause__, ProviderError):
        exc = exc.__cause__  # a provider failure re-raised as one of our typed errors
    declared = getattr(exc, "outcome", None)
    if isinstance(declared, Outcome):
        return declared
    if isinstance(exc, ProviderTimeout | TimeoutError):
        return Outcome.PROVIDER_TIMEOUT
    if isinstance(exc, ProviderRejected):
        return Outcome.REFUSED_BY_PROVIDER
    if isinstance(exc, ProviderError):
        if produced_output:
            return Outcome.PROVIDER_ERROR_MID_OUTPUT
        return Outcome.PROVIDER_ERROR_BEFORE_OUTPUT
    return Outcome.INTERNAL_ERROR


def usage_so_far(reported: Usage | None, input_estimate: int, delivered_tokens: int) -> Usage:
    """What a call used up to a stop, or when its provider never said: the provider's count
    where it gave one, the output at least what was delivered, the input at least the hold's
    estimate when the provider gave none. Never nothing for a call that was sent."""
    reported = reported or Usage()
    return Usage(
        reported.input_tokens or input_estimate,
        max(reported.output_tokens, delivered_tokens),
        reported.cached_input_tokens,
    )


@dataclass
class MeteredCall:
    """One admitted operation and what it has used so far; settles once (see the module)."""

    meter: Meter
    ticket: Ticket
    input_estimate: int = 0  # the input tokens the hold was sized for (token-priced calls)
    stopped: Callable[[], Outcome | None] = field(default=lambda: None)
    reported: Usage | None = None  # the provider's latest (cumulative) count
    reported_units: Mapping[str, int] | None = None  # a tool's or job's own units
    pieces: int = 0  # output pieces delivered (stream deltas, or one whole answer)
    chars: int = 0  # characters of output delivered
    settlement: Settlement | None = None
    _settling: asyncio.Future[Settlement] | None = field(default=None, repr=False)

    # -- what the call site says -------------------------------------------------------------

    def report(self, usage: Usage) -> None:
        """The provider's count so far (the latest replaces earlier ones)."""
        self.reported = usage

    def report_units(self, units: Mapping[str, int]) -> None:
        """What a tool or job used, in its price's units."""
        self.reported_units = dict(units)

    def deliver(self, text: str) -> None:
        """Output that reached the caller (after the write that sent it returned)."""
        if text:
            self.pieces += 1
            self.chars += len(text)

    def deliver_tool_calls(self, calls: tuple[ToolCall, ...]) -> None:
        for call in calls:
            self.deliver(call.name + dumps(call.arguments).decode())

    async def extend(
        self, more_usage: Mapping[str, int], *, ttl: timedelta | None = None
    ) -> Extension:
        """Grows the hold by what `more_usage` costs at its frozen price, with a later expiry
        (a speech session that cannot know its length); refused like an admission."""
        more = cost_of(self.ticket.rates, more_usage)
        extension = await self.meter.extend(self.ticket.hold_id, more, ttl=ttl)
        self.ticket = replace(self.ticket, amount=extension.amount, expires_at=extension.expires_at)
        return extension

    @property
    def produced_output(self) -> bool:
        return self.pieces > 0

    # -- the usage rule ----------------------------------------------------------------------

    @property
    def delivered_tokens(self) -> int:
        """The output delivered, in tokens: at least one per piece, else four characters each."""
        return max(self.pieces, -(-self.chars // CHARS_PER_TOKEN))

    def usage(self) -> Usage:
        """For a token-priced call: the provider's report when it gave a whole one, else the
        usage so far (a provider that reported nothing is never silently free)."""
        if self.reported is not None and self.reported.input_tokens > 0:
            return self.reported
        return self.usage_so_far()

    def usage_so_far(self) -> Usage:
        return usage_so_far(self.reported, self.input_estimate, self.delivered_tokens)

    def _units(self, *, so_far: bool) -> dict[str, int]:
        if not self._token_priced:
            return dict(self.reported_units or {})
        return (self.usage_so_far() if so_far else self.usage()).units()

    # -- settling ----------------------------------------------------------------------------

    @property
    def _token_priced(self) -> bool:
        return self.reported_units is None and "output_tokens" in self.ticket.rates

    async def succeed(self) -> Settlement:
        """Settles a completed operation: charged its usage (see `usage`)."""
        if self._token_priced and (self.reported is None or self.reported.input_tokens == 0):
            log.warning("provider reported no usage", price=self.ticket.price)
        return await self.settle(Outcome.SUCCESS)

    async def settle(
        self,
        outcome: Outcome,
        *,
        usage: Mapping[str, int] | None = None,
        usage_so_far: Mapping[str, int] | None = None,
    ) -> Settlement:
        """Settles by the charge policy, once; a second call waits for the first's result.

        `usage` and `usage_so_far` default to what the call site reported (the one rule).
        """
        self.settlement = await asyncio.shield(self._settle_once(outcome, usage, usage_so_far))
        return self.settlement

    def _settle_once(
        self,
        outcome: Outcome,
        usage: Mapping[str, int] | None = None,
        usage_so_far: Mapping[str, int] | None = None,
    ) -> asyncio.Future[Settlement]:
        """The one settlement, started in its own task (the first caller's outcome wins)."""
        if self._settling is None:
            self._settling = asyncio.ensure_future(
                self.meter.settle(
                    self.ticket.hold_id,
                    outcome,
                    usage=usage if usage is not None else self._units(so_far=False),
                    usage_so_far=(
                        usage_so_far if usage_so_far is not None else self._units(so_far=True)
                    ),
                    rates=self.ticket.rates,
                    price=self.ticket.price,
                )
            )
        return self._settling

    async def __aenter__(self) -> MeteredCall:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Settles what the block left open: by the table when something escaped it, and as our
        own failure (free) when the block ended without settling. `settlement` stays what the
        call site itself settled (None if it did not)."""
        if self._settling is None:
            outcome = (
                Outcome.INTERNAL_ERROR
                if exc is None
                else outcome_of(exc, produced_output=self.produced_output, stopped=self.stopped())
            )
            self._settle_once(outcome)
        assert self._settling is not None
        try:
            await asyncio.shield(self._settling)
        except Exception:  # the hold stays open and reconciliation settles it; keep `exc`
            log.exception("settlement failed", hold=str(self.ticket.hold_id))
            if exc is None:
                raise
