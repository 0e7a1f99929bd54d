from __future__ import annotations

import asyncio

from lipika.kit import sse


class Client:
    """An ASGI peer: records what the response sends, and can hang up."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.gone = asyncio.Event()

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    @property
    def body(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body" and m["body"]]


async def run(frames, client: Client, heartbeat: float = 10) -> None:
    await sse.sse_response(frames, heartbeat=heartbeat)({"type": "http"}, client.receive, client.send)


async def slow(*frames: bytes, pause: float):
    for frame in frames:
        await asyncio.sleep(pause)
        yield frame


async def test_frames_pass_unchanged_and_the_stream_ends() -> None:
    client = Client()
    await run(slow(sse.frame({"a": 1}), sse.DONE, pause=0), client)
    start = client.sent[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream") and b"content-length" not in headers
    assert client.body == [b'data: {"a":1}\n\n', sse.DONE]
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_silence_is_filled_with_heartbeats() -> None:
    client = Client()
    await run(slow(sse.frame(1), sse.DONE, pause=0.35), client, heartbeat=0.1)
    frames = [chunk for chunk in client.body if chunk != sse.HEARTBEAT]
    assert frames == [b"data: 1\n\n", sse.DONE]
    assert client.body.count(sse.HEARTBEAT) >= 2


async def test_a_busy_stream_sends_no_heartbeat() -> None:
    client = Client()
    await run(slow(*[sse.frame(i) for i in range(30)], pause=0.01), client, heartbeat=0.1)
    assert sse.HEARTBEAT not in client.body and len(client.body) == 30


async def test_a_disconnect_cancels_the_producer_and_waits_for_its_cleanup() -> None:
    client = Client()
    cleaned = asyncio.Event()

    async def endless():
        try:
            while True:
                yield b"x"
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # cleanup that awaits (settling a hold) still runs
            cleaned.set()
            raise

    response = asyncio.create_task(run(endless(), client))
    await asyncio.sleep(0.05)
    client.gone.set()
    await asyncio.wait_for(response, 2)
    assert cleaned.is_set()
    assert client.body and set(client.body) == {b"x"}
