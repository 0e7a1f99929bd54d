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


async def with_heartbeats(
    frames: AsyncIterator[bytes], *, heartbeat: float
) -> AsyncIterator[bytes]:
    """Relays `frames`, adding a heartbeat comment after `heartbeat` seconds of silence.

    The producer runs as its own task, so a silent upstream never stalls the heartbeat, and
    closing this iterator (the client went away) cancels the producer, which closes the
    upstream and settles. Frames produced while the writer was busy go out in one write.
    """
    pending: list[bytes] = []
    ready = asyncio.Event()
    ended: list[BaseException | None] = []

    async def produce() -> None:
        try:
            async for chunk in frames:
                pending.append(chunk)
                ready.set()
        except Exception as exc:  # raised again in the writer, inside the request
            ended.append(exc)
        else:
            ended.append(None)
        ready.set()

    producer = asyncio.create_task(produce(), name="sse-producer")
    try:
        while True:
            try:
                async with asyncio.timeout(heartbeat):
                    await ready.wait()
            except TimeoutError:
                yield HEARTBEAT
                continue
            ready.clear()
            if pending:
                batch = pending[0] if len(pending) == 1 else b"".join(pending)
                pending.clear()
                yield batch
            if ended:
                if ended[0] is not None:
                    raise ended[0]
                return
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(producer)


def sse_response(frames: AsyncIterator[bytes], *, heartbeat: float) -> StreamingResponse:
    return StreamingResponse(
        with_heartbeats(frames, heartbeat=heartbeat), media_type=MEDIA_TYPE, headers=HEADERS
    )
