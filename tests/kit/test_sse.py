from __future__ import annotations

import asyncio

import pytest

from lipika.kit import sse


async def slow(*frames: bytes, pause: float = 0.0):
    for frame in frames:
        await asyncio.sleep(pause)
        yield frame


async def collect(frames) -> list[bytes]:
    return [chunk async for chunk in frames]


async def test_silence_is_filled_with_heartbeats_and_frames_pass_unchanged() -> None:
    out = await collect(sse.with_heartbeats(slow(sse.frame({"a": 1}), sse.DONE, pause=0.25), heartbeat=0.1))
    frames = [chunk for chunk in out if chunk != sse.HEARTBEAT]
    assert frames == [b'data: {"a":1}\n\n', sse.DONE]
    assert out.count(sse.HEARTBEAT) >= 2


async def test_frames_ready_together_go_out_in_one_write() -> None:
    async def burst():
        for frame in (b"1", b"2", b"3"):
            yield frame  # no await between them: all three are ready before the writer runs

    out = await collect(sse.with_heartbeats(burst(), heartbeat=10))
    assert out == [b"123"]


async def test_a_producer_error_reaches_the_reader() -> None:
    async def failing():
        yield b"first"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await collect(sse.with_heartbeats(failing(), heartbeat=10))


async def test_closing_the_reader_cancels_the_producer() -> None:
    stopped = asyncio.Event()

    async def endless():
        try:
            while True:
                yield b"x"
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    reader = sse.with_heartbeats(endless(), heartbeat=10)
    assert await anext(reader) == b"x"
    await reader.aclose()
    assert stopped.is_set()
