"""How a session ends decides its charge (docs/charge-policy.md, speech rows): the provider
failing mid-session, the client vanishing without a close frame, WebM/Opus audio measured by
decoding it; the ledger audit balances after each."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import orjson
import pytest

from lipika.billing.policy import Outcome
from lipika.providers.base import ProviderOverloaded
from lipika.providers.capabilities import TranscriptionOptions
from lipika.providers.demo_speech import DemoTranscriptionProvider, DemoTranscriptionSession
from tests.speech.audio import RATE, frames, speech_pcm, speech_webm
from tests.speech.conftest import RATE_MICRO, live, workspace

FRAME = RATE * 2 // 50


class _FailsAfter(DemoTranscriptionSession):
    """The demo, whose connection drops once `finals` final segments were sent."""

    def __init__(self, options: TranscriptionOptions, finals: int) -> None:
        super().__init__(options, word_seconds=0.4, words_per_segment=4)
        self.finals_left = finals

    async def events(self):
        async for event in super().events():
            yield event
            if getattr(event, "final", False):
                self.finals_left -= 1
                if self.finals_left == 0:
                    await asyncio.sleep(0.2)  # audio of the next segment is in flight
                    raise ProviderOverloaded("the provider dropped the connection")


class _Failing(DemoTranscriptionProvider):
    def __init__(self, finals: int) -> None:
        super().__init__()
        self.finals = finals

    async def open(self, options: TranscriptionOptions):
        return _FailsAfter(options, self.finals)


@contextlib.asynccontextmanager
async def provider_swapped(app, provider) -> AsyncIterator[None]:
    live_providers = app.lifespan_state["transcribers"].live
    original = live_providers["demo"]
    live_providers["demo"] = provider
    try:
        yield
    finally:
        live_providers["demo"] = original


async def test_a_provider_failing_mid_session_charges_the_finals_delivered(
    speech_app, speech_url, signup, books
) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    async with provider_swapped(speech_app, _Failing(finals=2)):
        async with live(speech_url, headers=account.headers) as (ws, got, reader):
            with contextlib.suppress(Exception):
                for chunk in frames(speech_pcm(), FRAME):
                    await ws.send(chunk)
                    await asyncio.sleep(0.002)
            await reader
    finals = got.of("final")
    assert [f["end"] for f in finals] == [1.6, 3.2]  # two segments of four 0.4 s words
    assert got.last["type"] == "error" and got.last["fatal"] is True
    assert got.last["error"]["code"] == "provider_overloaded"
    assert got.close_code == 1011
    usage = got.of("usage")[0]
    assert usage["audio_seconds"] > 3.2  # more was streamed than the finals cover ...
    assert usage["charged_seconds"] == 4  # ... but only the finals' 3.2 s are charged
    assert (await books.state(ws_id)).balance == before.balance - 4 * RATE_MICRO
    [hold] = await books.holds(ws_id)
    assert hold.outcome == Outcome.PROVIDER_ERROR_MID_SESSION.value
    await books.assert_balanced()


async def test_a_provider_failing_before_any_final_is_free(
    speech_app, speech_url, signup, books
) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)

    class _Refuses(DemoTranscriptionProvider):
        async def open(self, options):
            raise ProviderOverloaded("no capacity")

    async with provider_swapped(speech_app, _Refuses()):
        async with live(speech_url, headers=account.headers) as (ws, got, reader):
            await reader
    assert got.last["error"]["code"] == "provider_overloaded"
    assert got.close_code == 1011
    assert (await books.state(ws_id)).balance == before.balance
    [hold] = await books.holds(ws_id)
    assert hold.status.value == "released"
    await books.assert_balanced()


async def _vanish(ws) -> None:
    """Drops the TCP connection without a close frame."""
    transport = ws.transport
    sock: socket.socket = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    transport.abort()


async def test_a_client_vanishing_without_a_close_frame_is_charged_the_audio_it_streamed(
    speech_url, signup, books
) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    audio = speech_pcm()[: RATE * 2 * 3]  # 3 s
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        for chunk in frames(audio, FRAME):
            await ws.send(chunk)
        while not got.of("interim"):  # the server has read some audio ...
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # ... and all of it
        await _vanish(ws)
        await reader
    for _ in range(200):  # the server notices, then settles
        holds = await books.holds(ws_id)
        if holds and holds[0].status.value != "open":
            break
        await asyncio.sleep(0.02)
    [hold] = holds
    assert hold.outcome == Outcome.CLIENT_DISCONNECT.value
    assert hold.captured == 3 * RATE_MICRO
    assert (await books.state(ws_id)).balance == before.balance - 3 * RATE_MICRO
    await books.assert_balanced()


@pytest.mark.parametrize("pace", [0.0, 0.02])
async def test_webm_opus_from_a_browser_is_decoded_and_charged_by_its_samples(
    speech_url, signup, books, pace
) -> None:
    """MediaRecorder chunks (here ~250 ms of WebM/Opus each), sent as fast as possible and at
    about real-time pace: the audio charged is the decoded length."""
    account = await signup()
    webm = speech_webm()
    async with live(speech_url, "?encoding=webm-opus", headers=account.headers) as (
        ws,
        got,
        reader,
    ):
        for chunk in frames(webm, 3_500):
            await ws.send(chunk)
            await asyncio.sleep(pace)
        await ws.send(orjson.dumps({"type": "close"}).decode())
        await reader
    assert got.events[0]["encoding"] == "webm-opus"
    assert got.last == {"type": "done", "reason": "closed"}
    usage = got.of("usage")[0]
    assert abs(usage["audio_seconds"] - 5.08) < 0.05, usage
    assert usage["charged_seconds"] == 6
    assert got.of("final")
    await books.assert_balanced()


async def test_a_broken_webm_stream_is_a_typed_error(speech_url, signup, books) -> None:
    account = await signup()
    async with live(speech_url, "?encoding=webm-opus", headers=account.headers) as (
        ws,
        got,
        reader,
    ):
        await ws.send(b"this is not a webm file" * 400)
        await ws.send(orjson.dumps({"type": "close"}).decode())
        await reader
    codes = [e["error"]["code"] for e in got.of("error")]
    assert "unreadable_audio" in codes
    assert got.close_code == 4400
    await books.assert_balanced()


async def test_our_own_failure_mid_session_is_a_typed_error_and_free(
    speech_app, speech_url, signup, books
) -> None:
    """A bug or an outage on our side mid-session: an `internal_error` event, close 1011, and
    the session is free (charge policy: `internal_error`)."""
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)

    class _Breaks(DemoTranscriptionSession):
        async def finalize(self) -> None:
            raise RuntimeError("a bug of ours")

    class _Broken(DemoTranscriptionProvider):
        async def open(self, options):
            return _Breaks(options, 0.4, 8)

    async with provider_swapped(speech_app, _Broken()):
        async with live(speech_url, headers=account.headers) as (ws, got, reader):
            for chunk in frames(speech_pcm()[: RATE * 2], FRAME):
                await ws.send(chunk)
            await ws.send('{"type": "finalize"}')
            await reader
    assert got.last["type"] == "error" and got.last["error"]["code"] == "internal_error"
    assert got.close_code == 1011
    [hold] = await books.holds(ws_id)
    assert hold.outcome == Outcome.INTERNAL_ERROR.value
    assert (await books.state(ws_id)).balance == before.balance
    await books.assert_balanced()
