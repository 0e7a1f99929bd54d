"""Deepgram live streaming through the official SDK against the fake Deepgram server (real
WebSockets on 127.0.0.1), end to end through the live route; charged from Deepgram's own
`Metadata.duration` and audited after each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager

from lipika.app import create_app
from lipika.billing.policy import Outcome
from lipika.providers import deepgram
from tests.fixtures.fakes.deepgram import FakeDeepgram
from tests.fixtures.live import serve
from tests.speech.audio import RATE, frames, speech_pcm, speech_webm
from tests.speech.conftest import live, speech_settings, workspace

FRAME = RATE * 2 // 50
NOVA_MICRO = 12_834  # stt.nova-3 a second


@pytest.fixture(scope="session")
async def fake_deepgram() -> AsyncIterator[FakeDeepgram]:
    fake = await FakeDeepgram().start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
async def deepgram_url(settings, fake_deepgram: FakeDeepgram) -> AsyncIterator[str]:
    configured = speech_settings(
        settings, deepgram_api_key=fake_deepgram.api_key, deepgram_base_url=fake_deepgram.base_url
    )
    async with LifespanManager(create_app(configured)) as manager, serve(manager.app) as url:
        yield url.replace("http://", "ws://")


@pytest.fixture
def dg(fake_deepgram: FakeDeepgram) -> FakeDeepgram:
    fake_deepgram.reset()
    return fake_deepgram


async def _session(
    url,
    account,
    audio: bytes,
    query: str = "?model=nova-3",
    *,
    close: bool = True,
    frame: int = FRAME,
):
    async with live(url, query, headers=account.headers) as (ws, got, reader):
        try:
            for chunk in frames(audio, frame):
                await ws.send(chunk)
                await asyncio.sleep(0)
            if close:
                await ws.send('{"type": "close"}')
        except Exception:
            pass  # the server ended the session first
        await reader
    return got


async def test_a_session_is_relayed_and_charged_by_deepgrams_duration(
    deepgram_url, dg, signup, books
) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    audio = speech_pcm()
    got = await _session(deepgram_url, account, audio)
    [seen] = dg.sessions
    assert seen.query["model"] == "nova-3"
    assert (seen.query["encoding"], seen.query["sample_rate"]) == ("linear16", "16000")
    assert seen.audio_bytes == len(audio) and seen.close_streams == 1
    assert got.last == {"type": "done", "reason": "closed"}
    finals = got.of("final")
    assert finals[0]["text"] == "word1 word2 word3 word4"
    assert (finals[0]["start"], finals[0]["end"]) == (0.0, 2.0)
    assert got.of("interim")[0]["text"] == "word1"
    usage = got.of("usage")[0]
    assert usage["charged_seconds"] == 6  # Metadata.duration 5.08 s, rounded up
    assert usage["credits_charged"] == 6 * NOVA_MICRO
    assert (await books.state(ws_id)).balance == before.balance - 6 * NOVA_MICRO
    await books.assert_balanced()


async def test_finalize_and_keepalive_reach_deepgram(
    deepgram_url, dg, signup, books, monkeypatch
) -> None:
    monkeypatch.setattr(deepgram, "KEEPALIVE_SECONDS", 0.2)
    account = await signup()
    async with live(deepgram_url, "?model=nova-3", headers=account.headers) as (ws, got, reader):
        for chunk in frames(speech_pcm()[: RATE * 2 * 3], FRAME):  # 3 s
            await ws.send(chunk)
        await ws.send('{"type": "finalize"}')
        await asyncio.sleep(0.8)  # quiet: the session keeps Deepgram's socket alive
        await ws.send('{"type": "close"}')
        await reader
    [seen] = dg.sessions
    assert seen.finalizes == 1 and seen.keepalives >= 1
    assert [f["end"] for f in got.of("final")] == [2.0, 3.0]
    await books.assert_balanced()


@pytest.mark.parametrize("how", ["drop", "error"])
async def test_deepgram_failing_mid_session_charges_the_finals_delivered(
    deepgram_url, dg, signup, books, how
) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    if how == "drop":
        dg.drop_after_seconds = 3.0
    else:
        dg.error_after_seconds = 3.0
    got = await _session(deepgram_url, account, speech_pcm(), close=False)
    assert got.last["type"] == "error" and got.last["error"]["code"] == "provider_error"
    assert got.close_code == 1011
    assert [f["end"] for f in got.of("final")] == [2.0]
    assert got.of("usage")[0]["charged_seconds"] == 2
    [hold] = await books.holds(ws_id)
    assert hold.outcome == Outcome.PROVIDER_ERROR_MID_SESSION.value
    assert (await books.state(ws_id)).balance == before.balance - 2 * NOVA_MICRO
    await books.assert_balanced()


@pytest.mark.parametrize(
    ("status", "code"), [(429, "provider_rate_limited"), (503, "provider_overloaded")]
)
async def test_a_refused_handshake_is_free(deepgram_url, dg, signup, books, status, code) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    dg.reject_status = status
    got = await _session(deepgram_url, account, b"", close=False)
    assert got.last["error"]["code"] == code
    assert (await books.state(ws_id)).balance == before.balance
    await books.assert_balanced()


async def test_a_wrong_key_is_the_providers_auth_failure(fake_deepgram) -> None:
    from lipika.providers.base import ProviderAuthFailed
    from lipika.providers.capabilities import TranscriptionOptions

    provider = deepgram.DeepgramProvider("wrong-key", fake_deepgram.base_url)
    with pytest.raises(ProviderAuthFailed):
        await provider.open(TranscriptionOptions(model="nova-3"))


async def test_webm_opus_is_passed_to_deepgram_as_it_is(deepgram_url, dg, signup, books) -> None:
    account = await signup()
    webm = speech_webm()
    got = await _session(
        deepgram_url, account, webm, "?model=nova-3&encoding=webm-opus", frame=3_500
    )
    [seen] = dg.sessions
    assert "encoding" not in seen.query and seen.audio_bytes == len(webm)
    assert got.last == {"type": "done", "reason": "closed"}
    usage = got.of("usage")[0]
    assert abs(usage["audio_seconds"] - 5.08) < 0.05
    assert usage["charged_seconds"] == 6
    assert got.of("final")
    await books.assert_balanced()
