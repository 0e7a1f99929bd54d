"""The metering session: the one exception->outcome table, the one usage-so-far rule, and a
settlement that a second cancellation cannot interrupt."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from lipika.billing.models import HoldStatus
from lipika.billing.policy import Outcome
from lipika.billing.pricebook import PriceBook
from lipika.billing.session import outcome_of, usage_so_far
from lipika.kit.sse import ClientGone
from lipika.providers.base import (
    ProviderAuthFailed,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    Usage,
)
from tests.fixtures.ledger import Books

DEMO = PriceBook.load().get("demo")
MAX_USAGE = {"input_tokens": 100, "output_tokens": 100}


class Wrapped(Exception):
    """One of our typed errors raised from a provider's."""


def wrapped(cause: Exception) -> Exception:
    try:
        raise Wrapped("typed") from cause
    except Wrapped as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "before", "after"),
    [
        (asyncio.CancelledError(), Outcome.CLIENT_DISCONNECT, Outcome.CLIENT_DISCONNECT),
        (ClientGone(), Outcome.CLIENT_DISCONNECT, Outcome.CLIENT_DISCONNECT),
        (GeneratorExit(), Outcome.CLIENT_DISCONNECT, Outcome.CLIENT_DISCONNECT),
        (TimeoutError(), Outcome.PROVIDER_TIMEOUT, Outcome.PROVIDER_TIMEOUT),
        (ProviderTimeout(), Outcome.PROVIDER_TIMEOUT, Outcome.PROVIDER_TIMEOUT),
        (ProviderRejected(), Outcome.REFUSED_BY_PROVIDER, Outcome.REFUSED_BY_PROVIDER),
        (
            ProviderOverloaded(),
            Outcome.PROVIDER_ERROR_BEFORE_OUTPUT,
            Outcome.PROVIDER_ERROR_MID_OUTPUT,
        ),
        (
            ProviderRateLimited(),
            Outcome.PROVIDER_ERROR_BEFORE_OUTPUT,
            Outcome.PROVIDER_ERROR_MID_OUTPUT,
        ),
        (
            ProviderAuthFailed(),
            Outcome.PROVIDER_ERROR_BEFORE_OUTPUT,
            Outcome.PROVIDER_ERROR_MID_OUTPUT,
        ),
        (
            wrapped(ProviderError()),
            Outcome.PROVIDER_ERROR_BEFORE_OUTPUT,
            Outcome.PROVIDER_ERROR_MID_OUTPUT,
        ),
        (wrapped(ProviderTimeout()), Outcome.PROVIDER_TIMEOUT, Outcome.PROVIDER_TIMEOUT),
        (RuntimeError("ours"), Outcome.INTERNAL_ERROR, Outcome.INTERNAL_ERROR),
    ],
)
def test_the_one_table_maps_what_ended_a_call_to_its_outcome(
    exc: BaseException, before: Outcome, after: Outcome
) -> None:
    assert outcome_of(exc, produced_output=False) is before
    assert outcome_of(exc, produced_output=True) is after


def test_a_cancellation_the_caller_asked_for_settles_by_its_reason() -> None:
    stopped = Outcome.PROVIDER_TIMEOUT
    assert outcome_of(asyncio.CancelledError(), produced_output=True, stopped=stopped) is stopped


def test_usage_so_far_prefers_the_providers_count_and_is_never_nothing() -> None:
    assert usage_so_far(None, 40, 0) == Usage(40, 0, 0)
    assert usage_so_far(None, 40, 7) == Usage(40, 7, 0)
    assert usage_so_far(Usage(12, 3, 2), 40, 7) == Usage(12, 7, 2)
    assert usage_so_far(Usage(12, 30, 2), 40, 7) == Usage(12, 30, 2)
    assert usage_so_far(Usage(0, 5), 40, 1) == Usage(40, 5, 0)


async def test_a_hang_up_charges_the_estimate_and_what_was_delivered(books: Books) -> None:
    workspace_id = await books.new_wallet()
    with pytest.raises(ClientGone):
        async with books.meter.session(
            workspace_id, None, operation="test", price="demo", max_usage=MAX_USAGE
        ) as call:
            for piece in ("one", " two", " three"):
                call.deliver(piece)
            raise ClientGone
    [hold] = await books.holds(workspace_id)
    assert (hold.status, hold.outcome) == (HoldStatus.CAPTURED, "client_disconnect")
    # 13 characters in three pieces: four characters a token is more than one a piece
    assert hold.usage == {"input_tokens": 100, "cached_input_tokens": 0, "output_tokens": 4}
    assert hold.captured == DEMO.cost({"input_tokens": 100, "output_tokens": 4})
    await books.assert_balanced()


async def test_a_second_cancellation_cannot_interrupt_the_settlement(books: Books) -> None:
    workspace_id = await books.new_wallet()
    entered = asyncio.Event()

    async def operation() -> None:
        async with books.meter.session(
            workspace_id, None, operation="test", price="demo", max_usage=MAX_USAGE
        ) as call:
            call.deliver("partial")
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(operation())
    await entered.wait()
    task.cancel()
    await asyncio.sleep(0)  # the session has started settling
    task.cancel()  # and is cancelled again while it waits
    with contextlib.suppress(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5):
        while (hold := (await books.holds(workspace_id))[0]).status is HoldStatus.OPEN:
            await asyncio.sleep(0.01)
    assert (hold.status, hold.outcome) == (HoldStatus.CAPTURED, "client_disconnect")
    assert (await books.state(workspace_id)).held == 0
    await books.assert_balanced()
