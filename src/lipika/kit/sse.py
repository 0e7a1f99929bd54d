"""Server-sent events: `data: {json}\\n\\n` frames over a Starlette `StreamingResponse`.

`sse_response` turns an async iterator of ready frames into a response that also writes a
heartbeat comment whenever the iterator stays silent. The frames are bytes built once with
orjson; nothing is re-encoded on the way out. Producers own their time budget and end with
their own terminal frame (an error frame or `[DONE]`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse

HEARTBEAT = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
MEDIA_TYPE = "text/event-stream"


def frame(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def event(name: str, payload: Any) -> bytes:
    """A named event (`event: name`), for streams whose clients dispatch on the event type."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class _Relay:
    """State shared by the producer task, the heartbeat timer and the writer of one stream."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.ready = asyncio.Event()
        self.ended = False
        self.error: BaseException | None = None
        self.quiet = True  # nothing produced since the last heartbeat tick
        self.beat_due = False

    def tick(self) -> None:
        if self.quiet:
            self.beat_due = True
            self.ready.set()
        self.quiet = True


async def with_heartbeats(
    frames: AsyncIterator[bytes], *, heartbeat: float
) -> AsyncIterator[bytes]:
    """Relays `frames`, adding a heartbeat comment when a heartbeat period passes in silence.

    The producer runs as its own task, so a silent upstream never stalls the heartbeat, and
    closing this iterator (the client went away) cancels the producer, which closes the
    upstream and settles. Frames produced while the writer was busy go out in one write. One
    timer per period checks for silence, so a busy stream pays nothing per frame for it.
    """
    relay = _Relay()
    loop = asyncio.get_running_loop()

    async def produce() -> None:
        try:
            async for chunk in frames:
                relay.pending.append(chunk)
                relay.quiet = False
                relay.ready.set()
        except Exception as exc:  # raised again in the writer, inside the request
            relay.error = exc
        relay.ended = True
        relay.ready.set()

    def tick() -> None:
        nonlocal timer
        relay.tick()
        timer = loop.call_later(heartbeat, tick)

    producer = asyncio.create_task(produce(), name="sse-producer")
    timer = loop.call_later(heartbeat, tick)
    try:
        while True:
            await relay.ready.wait()
            relay.ready.clear()
            if relay.pending:
                pending = relay.pending
                relay.pending = []
                yield pending[0] if len(pending) == 1 else b"".join(pending)
            elif relay.beat_due:
                yield HEARTBEAT
            relay.beat_due = False
            if relay.ended:
                if relay.error is not None:
                    raise relay.error
                return
    finally:
        timer.cancel()
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(producer)


def sse_response(frames: AsyncIterator[bytes], *, heartbeat: float) -> StreamingResponse:
    return StreamingResponse(
        with_heartbeats(frames, heartbeat=heartbeat), media_type=MEDIA_TYPE, headers=HEADERS
    )
