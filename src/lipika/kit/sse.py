"""Server-sent events: `data: {json}\\n\\n` frames, heartbeats, and the response that sends them.

`sse_response` turns an async iterator of ready frames into a response that also writes a
heartbeat comment whenever the iterator stays silent; `EventStream` itself takes a producer
that writes its frames, from whichever task makes them. The frames are bytes built once with
orjson; nothing is re-encoded on the way out. Producers own their time budget and end with
their own terminal frame (an error frame or `[DONE]`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

HEARTBEAT = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
MEDIA_TYPE = "text/event-stream"

Write: TypeAlias = Callable[[bytes], Awaitable[None]]  # sends one or more frames
Producer: TypeAlias = Callable[[Write], Awaitable[None]]  # writes the body's frames, then returns


class ClientGone(ConnectionError):
    """A write to a stream whose client has hung up: nothing more reaches it."""


def frame(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def event(name: str, payload: Any) -> bytes:
    """A named event (`event: name`), for streams whose clients dispatch on the event type."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class EventStream(Response):
    """A `text/event-stream` response whose frames are written by the task making them.

    `produce(write)` runs as the producer task and returns when the body is complete; the
    `write` it is given may be called from any task (an agent run writes from its own), so a
    relayed token costs one task step and no hand-off between tasks. The request's own task
    only waits for the producer to finish or for the client to leave; once the client has
    left, `write` raises `ClientGone`, and the request's task cancels the producer once (plain asyncio cancellation, so the producer's cleanup, such as
    settling a hold, runs to the end) and waits for it. A timer per heartbeat period writes a
    comment when the period passed without a frame.
    """

    media_type = MEDIA_TYPE

    def __init__(self, produce: Producer, *, heartbeat: float) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)  # no body, so no content-length: the stream is chunked
        self.produce = produce
        self.heartbeat = heartbeat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        loop = asyncio.get_running_loop()
        quiet = True
        beats: set[asyncio.Task[None]] = set()

        async def write(chunk: bytes) -> None:
            # The server drops writes after a hang-up without a word, and a producer reading
            # buffered provider events may not yield for many of them: refuse them instead, so
            # that nothing written after the hang-up counts as sent.
            if watcher.done():
                raise ClientGone("the client has left")
            nonlocal quiet
            quiet = False
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def pump() -> None:
            await self.produce(write)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def beat() -> None:
            if producer.done():  # the body has ended since the tick
                return
            with contextlib.suppress(OSError):  # the client left; the watcher sees it too
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})

        def tick() -> None:
            nonlocal quiet, timer
            if quiet and not producer.done():
                task = loop.create_task(beat())
                beats.add(task)
                task.add_done_callback(beats.discard)
            quiet = True
            timer = loop.call_later(self.heartbeat, tick)

        producer = loop.create_task(pump(), name="sse-producer")
        watcher = loop.create_task(_disconnected(receive), name="sse-disconnect")
        timer = loop.call_later(self.heartbeat, tick)
        try:
            await asyncio.wait((producer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            watcher.cancel()
            for task in beats:  # a heartbeat must not follow the end of the body
                task.cancel()
            if not producer.done():
                producer.cancel()
                await asyncio.wait((producer,))
        if not producer.cancelled() and (error := producer.exception()) is not None:
            if not isinstance(error, OSError):  # a write to a client that had left
                raise error


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def sse_response(frames: AsyncIterator[bytes], *, heartbeat: float) -> EventStream:
    """The response for frames made by an async iterator (in the producer task)."""

    async def produce(write: Write) -> None:
        async for chunk in frames:
            await write(chunk)

    return EventStream(produce, heartbeat=heartbeat)
