"""The streamed chat completion: provider deltas relayed as OpenAI chunks, metered end to end.

The hold is admitted before the response starts (so a refusal is a plain HTTP error), and the
stream settles exactly once however it ends, through its metering session (billing/session.py):
by the provider's reported usage on success, by the charge policy on a provider error, a
timeout or a client disconnect. The producer is a plain coroutine, not a generator the response
iterates: every write happens inside the session, so nothing can leave it unsettled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import orjson
import structlog

from lipika.billing.policy import Outcome
from lipika.billing.session import MeteredCall, outcome_of
from lipika.chat.schemas import CompletionUsage
from lipika.chat.service import Prepared, UpstreamFailed, completion_usage
from lipika.errors import LipikaError
from lipika.kit import sse
from lipika.providers.base import (
    Finish,
    ProviderError,
    StreamEvent,
    TextWithLogprobs,
    ToolCallDelta,
    Usage,
)

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

    def tool_call(self, delta: ToolCallDelta) -> bytes:
        """OpenAI's tool-call delta: the first of a call names it, the rest add arguments."""
        piece: dict = {"index": delta.index, "function": {"arguments": delta.arguments}}
        if delta.id is not None:
            piece["id"] = delta.id
            piece["type"] = "function"
            piece["function"]["name"] = delta.name or ""
        return self._choice({"tool_calls": [piece]}, None)

    def scored(self, delta: TextWithLogprobs) -> bytes:
        choice = {
            "index": 0,
            "delta": {"content": delta.text},
            "logprobs": delta.logprobs,
            "finish_reason": None,
        }
        return sse.frame({**self.head, "choices": [choice]})

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
    """One metered stream; the object is the response's producer (`sse.EventStream(stream)`).

    It pulls the next provider event only once the previous frame was handed to the
    connection: a client that stops reading stops the pull (kit/backpressure.py bounds what the
    connection buffers), and the output charged at a hang-up is what was sent to it.
    """

    def __init__(
        self, prepared: Prepared, call: MeteredCall, *, include_usage: bool, budget: float
    ) -> None:
        self.prepared = prepared
        self.call = call
        self.include_usage = include_usage
        self.budget = budget
        self.chunks = ChunkFrames(prepared.request.model)
        self._writing = False  # blocked handing a piece to the client (back-pressure)
        self._events: AsyncIterator[StreamEvent]
        self._first: asyncio.Future[StreamEvent]

    async def start(self, wait: float) -> None:
        """Calls the provider and waits up to `wait` seconds for its first event, so that a
        provider failing at once is answered with a plain HTTP error instead of a stream.
        Anything that escapes (that error, a cancellation) settles the session by the table."""
        async with contextlib.AsyncExitStack() as guard:
            guard.push_async_exit(self.call)
            self._events = self.prepared.provider.stream(self.prepared.request)
            self._first = asyncio.ensure_future(anext(self._events))
            guard.push_async_callback(self._close_upstream_if_failed)
            await asyncio.wait({self._first}, timeout=wait)
            if self._first.done() and isinstance(self._first.exception(), ProviderError):
                exc = self._first.exception()
                raise UpstreamFailed(exc) from exc
            guard.pop_all()  # the stream goes on: the producer owns the session from here

    async def __call__(self, write: sse.Write) -> None:
        """Writes the response body. The whole body, each of its writes included, runs inside
        the session: however it ends (the last frame, a provider error, the budget, or the
        cancellation of a client that left, even while a write is blocked on it), the hold is
        settled once, shielded, and the provider's stream is closed."""
        async with self.call, contextlib.AsyncExitStack() as upstream:
            upstream.push_async_callback(self._close_upstream)  # however the body ends
            await write(self.chunks.role())
            try:
                async with asyncio.timeout(self.budget):
                    finish = await self._relay(write)
            except sse.ClientGone:
                raise  # the session settles it as the client's hang-up
            except ProviderError as exc:
                failure: LipikaError = UpstreamFailed(exc)
                await self.call.settle(outcome_of(exc, produced_output=self.call.produced_output))
            except TimeoutError:
                failure = StreamTimedOut(f"the stream ran past its {self.budget:g} s budget")
                # Out of time while blocked on the client (it reads too slowly): charged what
                # was sent, like a hang-up; while waiting on the provider: its timeout, free.
                await self.call.settle(
                    Outcome.CLIENT_DISCONNECT if self._writing else Outcome.PROVIDER_TIMEOUT
                )
            except Exception:
                log.exception("chat stream failed", model=self.prepared.request.model)
                failure = StreamFailed("the stream failed on our side; nothing was charged")
                await self.call.settle(Outcome.INTERNAL_ERROR)
            else:
                await self._finish(write, finish)
                return
            await write(sse.frame(failure.body()))

    async def _relay(self, write: sse.Write) -> str:
        """Relays the provider's events until its `Finish`; returns the finish reason."""
        finish = "stop"
        try:
            try:
                event = await self._first
            except StopAsyncIteration:
                return finish
            while True:
                if type(event) is str:
                    if event:
                        self._writing = True
                        await write(self.chunks.content(event))
                        self._writing = False
                        self.call.deliver(event)
                elif type(event) is Usage:
                    self.call.report(event)
                elif type(event) is TextWithLogprobs:
                    self._writing = True
                    await write(self.chunks.scored(event))
                    self._writing = False
                    self.call.deliver(event.text)
                elif type(event) is ToolCallDelta:
                    self._writing = True
                    await write(self.chunks.tool_call(event))
                    self._writing = False
                    self.call.deliver((event.name or "") + event.arguments)
                elif type(event) is Finish:
                    finish = event.reason
                try:
                    event = await anext(self._events)
                except StopAsyncIteration:
                    return finish
        finally:
            await self._close_upstream()

    async def _finish(self, write: sse.Write, finish: str) -> None:
        await write(self.chunks.finish(finish))
        try:
            settlement = await self.call.succeed()
        except Exception:  # the hold stays open; reconciliation releases it
            log.exception("chat stream settlement failed", hold=str(self.call.ticket.hold_id))
            await write(sse.frame(StreamFailed("the charge could not be recorded").body()))
            return
        if self.include_usage:
            await write(self.chunks.usage(completion_usage(self.call.usage(), settlement)))
        await write(sse.DONE)

    async def _close_upstream(self) -> None:
        """Closes the provider's stream, which cancels the upstream call if it still runs."""
        if not self._first.done():
            self._first.cancel()
            with contextlib.suppress(BaseException):
                await self._first
        await self._events.aclose()

    async def _close_upstream_if_failed(self) -> None:
        await self._close_upstream()
