"""The streamed chat completion: provider deltas relayed as OpenAI chunks, metered end to end.

The hold is admitted before the response starts (so a refusal is a plain HTTP error), and the
stream settles exactly once however it ends: by the provider's reported usage on success, by the
charge policy on a provider error, a timeout or a client disconnect. Settlement runs shielded,
so the cancellation that a disconnect delivers cannot interrupt it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import orjson
import structlog

from lipika.billing.meter import Metered, Settlement
from lipika.billing.policy import Outcome
from lipika.chat.schemas import CompletionUsage
from lipika.chat.service import Prepared, UpstreamFailed, completion_usage
from lipika.errors import LipikaError
from lipika.kit import sse
from lipika.providers.base import Finish, ProviderError, StreamEvent, Usage, usage_so_far

log = structlog.get_logger()


class StreamTimedOut(LipikaError):
    status_code = 504
    code = "provider_timeout"
    type = "api_error"


class StreamFailed(LipikaError):
    status_code = 500
    code = "internal_error"
    type = "api_error"


class ChunkFrames:
    """OpenAI `chat.completion.chunk` frames for one completion; content frames are spliced
    from prebuilt bytes, since they are built once per token."""

    def __init__(self, model: str) -> None:
        self.head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        prefix = b"data: " + orjson.dumps(self.head)[:-1]
        self._content_head = prefix + b',"choices":[{"index":0,"delta":{"content":'
        self._content_tail = b'},"logprobs":null,"finish_reason":null}]}\n\n'

    def content(self, text: str) -> bytes:
        return self._content_head + orjson.dumps(text) + self._content_tail

    def role(self) -> bytes:
        return self._choice({"role": "assistant", "content": ""}, None)

    def finish(self, reason: str) -> bytes:
        return self._choice({}, reason)

    def usage(self, usage: CompletionUsage) -> bytes:
        return sse.frame({**self.head, "choices": [], "usage": usage.model_dump()})

    def _choice(self, delta: dict, finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse.frame({**self.head, "choices": [choice]})


class ChatStream:
    """One metered stream: `frames()` is the response body, to be run under `sse_response`."""

    def __init__(
        self, prepared: Prepared, held: Metered, *, include_usage: bool, budget: float
    ) -> None:
        self.prepared = prepared
        self.held = held
        self.include_usage = include_usage
        self.budget = budget
        self.chunks = ChunkFrames(prepared.request.model)
        self.reported: Usage | None = None
        self.relayed = 0
        self._settling: asyncio.Future[Settlement] | None = None
        self._events: AsyncIterator[StreamEvent]
        self._first: asyncio.Future[StreamEvent]

    async def start(self, wait: float) -> None:
        """Calls the provider and waits up to `wait` seconds for its first event, so that a
        provider failing at once is answered with a plain HTTP error instead of a stream."""
        self._events = self.prepared.provider.stream(self.prepared.request)
        self._first = asyncio.ensure_future(anext(self._events))
        await asyncio.wait({self._first}, timeout=wait)
        if self._first.done() and isinstance(self._first.exception(), ProviderError):
            exc = self._first.exception()
            await self._settle(exc.outcome)
            await self._events.aclose()
            raise UpstreamFailed(exc) from exc

    async def frames(self) -> AsyncIterator[bytes]:
        yield self.chunks.role()
        finish = "stop"
        try:
            async with asyncio.timeout(self.budget):
                async for event in self._provider_events():
                    if type(event) is str:
                        if event:
                            self.relayed += 1
                            yield self.chunks.content(event)
                    elif type(event) is Usage:
                        self.reported = event
                    elif type(event) is Finish:
                        finish = event.reason
        except asyncio.CancelledError:
            await self._settle(Outcome.CLIENT_DISCONNECT)
            raise
        except ProviderError as exc:
            error: LipikaError = UpstreamFailed(exc)
            outcome = exc.outcome_given(produced_output=bool(self.relayed))
        except TimeoutError:
            error = StreamTimedOut(f"the stream ran past its {self.budget:g} s budget")
            outcome = Outcome.PROVIDER_TIMEOUT
        except Exception:
            log.exception("chat stream failed", model=self.prepared.request.model)
            error = StreamFailed("the stream failed on our side; nothing was charged")
            outcome = Outcome.INTERNAL_ERROR
        else:
            yield self.chunks.finish(finish)
            try:
                settlement = await self._settle(Outcome.SUCCESS)
            except Exception:  # the hold stays open; reconciliation releases it
                log.exception("chat stream settlement failed", hold=str(self.held.ticket.hold_id))
                yield sse.frame(StreamFailed("the charge could not be recorded").body())
                return
            if self.include_usage:
                usage = self.reported or self._usage_so_far()
                yield self.chunks.usage(completion_usage(usage, settlement))
            yield sse.DONE
            return
        await self._settle(outcome)
        yield sse.frame(error.body())

    async def _provider_events(self) -> AsyncIterator[StreamEvent]:
        """The first event (awaited by `start`), then the rest; the provider stream is closed
        however this ends, which is what cancels the upstream call on a disconnect."""
        try:
            try:
                yield await self._first
            except StopAsyncIteration:
                return
            async for event in self._events:
                yield event
        finally:
            if not self._first.done():
                self._first.cancel()
                with contextlib.suppress(BaseException):
                    await self._first
            await self._events.aclose()

    def _usage_so_far(self) -> Usage:
        """What the provider reported, or (before it reports) the hold's input estimate and one
        token per relayed delta."""
        return usage_so_far(self.reported, self.prepared.max_usage["input_tokens"], self.relayed)

    async def _settle(self, outcome: Outcome) -> Settlement:
        """Settles once, in a task of its own: a cancellation waiting on it leaves it running."""
        if self._settling is None:
            if outcome is Outcome.SUCCESS and self.reported is None:
                log.warning("provider reported no usage", model=self.prepared.request.model)
            usage = (self.reported or self._usage_so_far()).units()
            self._settling = asyncio.ensure_future(
                self.held.settle(outcome, usage=usage, usage_so_far=self._usage_so_far().units())
            )
        return await asyncio.shield(self._settling)
