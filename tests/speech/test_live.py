"""Real-time sessions on the demo provider over a real WebSocket, with real speech audio
(espeak-ng), metered slice by slice; the ledger audit balances after each."""

from __future__ import annotations

import asyncio

import orjson

from lipika.billing.policy import Outcome
from tests.speech.audio import RATE, frames, speech_pcm
from tests.speech.conftest import RATE_MICRO, live, workspace

FRAME = RATE * 2 // 50  # 20 ms of PCM16


async def test_a_session_transcribes_and_charges_the_audio_streamed(
    speech_url, signup, books
) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    audio = speech_pcm()
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        for frame in frames(audio, FRAME):
            await ws.send(frame)
        await ws.send(orjson.dumps({"type": "close"}).decode())
        await reader
    assert got.events[0]["type"] == "ready"
    assert got.of("final"), got.events
    assert got.of("interim")
    assert got.last == {"type": "done", "reason": "closed"}
    assert got.close_code == 1000
    usage = got.of("usage")[0]
    seconds = len(audio) / (2 * RATE)
    assert usage["audio_seconds"] == round(seconds, 3)
    assert usage["charged_seconds"] == -(-len(audio) // (2 * RATE))  # whole seconds, rounded up
    assert usage["credits_charged"] == usage["charged_seconds"] * RATE_MICRO
    after = await books.state(ws_id)
    assert before.balance - after.balance == usage["credits_charged"]
    assert usage["balance_after"] == after.balance
    assert after.held == 0
    finals = got.of("final")
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(finals, finals[1:], strict=False))
    await books.assert_balanced()


async def _stream(ws, audio: bytes, *, pace: float = 0.0, frame: int = FRAME) -> None:
    for chunk in frames(audio, frame):
        await ws.send(chunk)
        if pace:
            await asyncio.sleep(pace)


async def test_a_wallet_that_runs_out_cuts_the_session_at_the_slice_boundary(
    speech_url, signup, books
) -> None:
    """5 s of credits, 2 s slices: the first two slices are held, the third cannot be; the
    audio is cut at 4 s exactly, the finals stop there, and 4 s are charged."""
    account = await signup()
    ws_id = workspace(account)
    await books.set_available(ws_id, 5 * RATE_MICRO)
    audio = speech_pcm(repeat=2)  # about 10 s
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        await _stream(ws, audio)
        await reader
    error = got.last
    assert error["type"] == "error" and error["fatal"] is True
    assert error["error"]["code"] == "insufficient_credits"
    assert got.close_code == 4402
    usage = got.of("usage")[0]
    assert usage["audio_seconds"] == 4.0
    assert usage["charged_seconds"] == 4
    assert usage["credits_charged"] == 4 * RATE_MICRO
    assert max(e["end"] for e in got.of("final")) <= 4.0
    state = await books.state(ws_id)
    assert state.available == 1 * RATE_MICRO and state.held == 0
    [hold] = await books.holds(ws_id)
    assert hold.captured == 4 * RATE_MICRO and hold.amount == 4 * RATE_MICRO
    await books.assert_balanced()


async def test_no_credits_for_the_first_slice_is_refused_before_any_audio(
    speech_url, signup, books
) -> None:
    account = await signup()
    ws_id = workspace(account)
    await books.set_available(ws_id, RATE_MICRO)  # one second; a slice is two
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        await reader
    assert [e["type"] for e in got.events] == ["error"]
    assert got.last["error"]["code"] == "insufficient_credits"
    assert got.close_code == 4402
    assert await books.holds(ws_id) == []
    await books.assert_balanced()


async def test_idle_session_ends_and_settles_what_was_streamed(speech_url, signup, books) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    audio = speech_pcm()[: RATE * 2 * 3]  # 3 s, then silence on the wire
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        await _stream(ws, audio)
        await ws.send('{"type": "keepalive"}')  # not audio: does not keep the session open
        await asyncio.wait_for(reader, 10)
    assert got.last == {"type": "done", "reason": "idle_timeout"}
    assert got.of("usage")[0]["charged_seconds"] == 3
    assert (await books.state(ws_id)).balance == before.balance - 3 * RATE_MICRO
    await books.assert_balanced()


async def test_the_session_maximum_cuts_the_audio_there(
    speech_app, speech_url, signup, books
) -> None:
    limits = speech_app.lifespan_state["settings"]
    account = await signup()
    audio = speech_pcm(repeat=7)  # about 35 s, past the 30 s maximum
    assert limits.stt_max_session_seconds == 30
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        await _stream(ws, audio, frame=FRAME * 10)
        await reader
    assert got.last == {"type": "done", "reason": "max_duration"}
    assert got.of("usage")[0]["audio_seconds"] == 30.0
    assert got.of("usage")[0]["charged_seconds"] == 30
    await books.assert_balanced()


async def test_bad_frames_and_messages_get_typed_errors_and_the_session_goes_on(
    speech_url, signup, books
) -> None:
    account = await signup()
    audio = speech_pcm()[: RATE * 2]
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        await ws.send(b"\x00" * 16_001)  # over the frame limit (and odd)
        await ws.send(b"\x00\x01\x02")  # not whole samples
        await ws.send("not json")
        await ws.send('{"type": "rewind"}')
        await ws.send("[1, 2]")
        await _stream(ws, audio)
        await ws.send('{"type": "finalize"}')
        await ws.send('{"type": "close"}')
        await reader
    errors = [e for e in got.of("error")]
    assert [e["error"]["code"] for e in errors] == [
        "frame_too_large",
        "malformed_frame",
        "malformed_message",
        "unknown_control",
        "unknown_control",
    ]
    assert all(e["fatal"] is False for e in errors)
    assert got.last == {"type": "done", "reason": "closed"}
    assert got.of("usage")[0]["charged_seconds"] == 1
    await books.assert_balanced()


async def test_finalize_returns_the_final_segment_of_the_audio_so_far(
    speech_url, signup, books
) -> None:
    account = await signup()
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        await _stream(ws, speech_pcm()[: RATE * 2 * 2])  # 2 s: five demo words, not a segment
        await ws.send('{"type": "finalize"}')
        for _ in range(100):
            if got.of("final"):
                break
            await asyncio.sleep(0.02)
        assert got.of("final")[0]["end"] == 2.0
        await ws.send('{"type": "close"}')
        await reader
    await books.assert_balanced()


async def test_a_client_faster_than_real_time_is_held_back(settings, signup, books) -> None:
    """With a lead of 1 s, 3 s of audio sent at once take at least 2 s to be read: the reader
    stops reading and the client's sends wait (the audio is all charged, none is lost)."""
    from asgi_lifespan import LifespanManager

    from lipika.app import create_app
    from tests.fixtures.live import serve
    from tests.speech.conftest import speech_settings

    account = await signup()
    app = create_app(speech_settings(settings, stt_max_lead_seconds=1))
    async with LifespanManager(app) as manager, serve(manager.app) as url:
        loop = asyncio.get_running_loop()
        async with live(url.replace("http", "ws"), headers=account.headers) as (ws, got, reader):
            started = loop.time()
            await _stream(ws, speech_pcm()[: RATE * 2 * 3])
            await ws.send('{"type": "close"}')
            await reader
            elapsed = loop.time() - started
    assert elapsed >= 2.0  # a floor set by the pacing, not a speed measurement
    assert got.of("usage")[0]["audio_seconds"] == 3.0
    await books.assert_balanced()


async def test_metrics_count_sessions_audio_and_open_websockets(
    speech_client, speech_url, signup, books
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async def sample(name: str, **labels: str) -> float:
        text = (await speech_client.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    account = await signup()
    sessions = await sample("lipika_speech_sessions_total", model="stt.demo", outcome="success")
    audio = await sample("lipika_speech_audio_seconds_total", model="stt.demo")
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        await ws.send(b"\x00\x00" * 8_000)  # 0.5 s
        while not got.events:
            await asyncio.sleep(0.01)
        assert await sample("lipika_open_streams", kind="websocket") == 1
        await ws.send('{"type": "close"}')
        await reader
    assert await sample("lipika_open_streams", kind="websocket") == 0
    assert (
        await sample("lipika_speech_sessions_total", model="stt.demo", outcome="success")
        == sessions + 1
    )
    assert await sample("lipika_speech_audio_seconds_total", model="stt.demo") == audio + 0.5
    await books.assert_balanced()


async def test_a_session_keeps_its_hold_alive_when_audio_trickles(books) -> None:
    """A hold past half its lifetime is renewed, at no cost, before more audio is sent (so
    reconciliation never releases a running session's hold)."""
    from datetime import timedelta

    from lipika.billing.meter import Owner
    from lipika.providers.capabilities import TranscriptionOptions
    from lipika.speech.live import Limits, LiveSession

    ws_id = await books.new_wallet()
    call = await books.meter.open_session(
        ws_id,
        None,
        operation="stt.live",
        price="stt.demo",
        max_usage={"audio_seconds": 2},
        owner=Owner("stt.session", "trickle"),
        ttl=timedelta(seconds=4),
    )
    async with call:
        session = LiveSession(
            socket=None,  # type: ignore[arg-type]  (only the metering is exercised)
            call=call,
            upstream=None,  # type: ignore[arg-type]
            options=TranscriptionOptions(model="demo"),
            limits=Limits(2, 30, 30, 64_000, 5, 3),
            provider_takes_format=False,
        )
        first = (await books.hold(call.ticket.hold_id)).expires_at
        assert await session._allow(RATE // 2) == RATE // 2  # fresh: nothing renewed
        assert (await books.hold(call.ticket.hold_id)).expires_at == first
        await asyncio.sleep(2.2)
        assert await session._allow(RATE // 2) == RATE // 2
        hold = await books.hold(call.ticket.hold_id)
        assert hold.expires_at > first and hold.amount == 2 * RATE_MICRO
        await call.settle(Outcome.SUCCESS, usage={"audio_seconds": 1})
    await books.assert_balanced()


async def test_concurrent_sessions_on_one_wallet_never_spend_more_than_it_holds(
    speech_url, signup, books
) -> None:
    """Three sessions at once on 8 s of credits, 2 s slices: the three admissions hold 6 s, so
    exactly one of the racing extensions wins the last 2 s; every session is cut at its
    boundary and together they are charged the 8 s, no more."""
    account = await signup()
    ws_id = workspace(account)
    await books.set_available(ws_id, 8 * RATE_MICRO)
    audio = speech_pcm()  # 5 s each

    all_admitted = asyncio.Barrier(3)

    async def one() -> dict:
        async with live(speech_url, headers=account.headers) as (ws, got, reader):
            while not got.events:
                await asyncio.sleep(0.01)
            assert got.events[0]["type"] == "ready"
            await all_admitted.wait()  # then they race for the last slice
            for chunk in frames(audio, FRAME * 5):
                try:
                    await ws.send(chunk)
                except Exception:
                    break
            await reader
        return got

    sessions = await asyncio.gather(one(), one(), one())
    charged = sorted(s.of("usage")[0]["charged_seconds"] for s in sessions)
    assert charged == [2, 2, 4]
    assert all(s.last["error"]["code"] == "insufficient_credits" for s in sessions)
    state = await books.state(ws_id)
    assert state.available == 0 and state.held == 0
    await books.assert_balanced()
