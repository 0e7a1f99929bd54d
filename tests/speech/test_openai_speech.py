"""OpenAI transcription through the official SDK against the fake OpenAI speech server: the
realtime transcription session end to end through the live route, and file transcription
charged by the provider's duration, checked against ours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import openai
import pytest
from asgi_lifespan import LifespanManager

from lipika.app import create_app
from lipika.billing.policy import Outcome
from tests.fixtures.fakes.openai_speech import FakeOpenAISpeech
from tests.fixtures.live import serve
from tests.speech.audio import RATE, frames, speech_pcm, speech_wav
from tests.speech.conftest import live, speech_settings, workspace

FRAME = RATE * 2 // 50
LIVE_MICRO = 28_334  # stt.gpt-live-transcribe a second
FILE_MICRO = 7_500  # stt.gpt-transcribe a second


@pytest.fixture(scope="session")
async def fake_openai_speech() -> AsyncIterator[FakeOpenAISpeech]:
    fake = await FakeOpenAISpeech().start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
async def openai_url(settings, fake_openai_speech: FakeOpenAISpeech) -> AsyncIterator[str]:
    configured = speech_settings(
        settings,
        openai_api_key=fake_openai_speech.api_key,
        openai_base_url=fake_openai_speech.base_url,
        provider_max_retries=0,
    )
    async with LifespanManager(create_app(configured)) as manager, serve(manager.app) as url:
        yield url.replace("http://", "ws://")


@pytest.fixture
def oa(fake_openai_speech: FakeOpenAISpeech) -> FakeOpenAISpeech:
    fake_openai_speech.reset()
    return fake_openai_speech


async def _session(url, account, audio: bytes, *, close: bool = True):
    async with live(url, "?model=gpt-live-transcribe&language=en", headers=account.headers) as (
        ws,
        got,
        reader,
    ):
        try:
            for chunk in frames(audio, FRAME):
                await ws.send(chunk)
                await asyncio.sleep(0)
            if close:
                await ws.send('{"type": "close"}')
        except Exception:
            pass
        await reader
    return got


async def test_a_realtime_session_is_relayed_and_charged(openai_url, oa, signup, books) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    audio = speech_pcm()
    got = await _session(openai_url, account, audio)
    [call] = oa.realtime
    assert call.query == {"intent": "transcription"}
    assert call.session["type"] == "transcription"
    assert call.session["audio"]["input"]["transcription"] == {
        "model": "gpt-live-transcribe",
        "language": "en",
    }
    assert call.session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert (
        abs(call.audio_bytes / (2 * 24_000) - len(audio) / (2 * RATE)) < 0.01
    )  # resampled, not lost
    assert got.last == {"type": "done", "reason": "closed"}
    finals = got.of("final")
    assert [(f["start"], f["end"]) for f in finals[:2]] == [(0.0, 2.0), (2.0, 4.0)]
    assert finals[0]["text"] == "word1 word2 word3 word4"
    assert got.of("interim")[0]["text"] == "word1"
    usage = got.of("usage")[0]
    assert usage["charged_seconds"] == 6
    assert (await books.state(ws_id)).balance == before.balance - 6 * LIVE_MICRO
    await books.assert_balanced()


@pytest.mark.parametrize("how", ["drop", "error"])
async def test_openai_failing_mid_session_charges_the_finals_delivered(
    openai_url, oa, signup, books, how
) -> None:
    account = await signup()
    ws_id = workspace(account)
    if how == "drop":
        oa.drop_after_seconds = 3.0
    else:
        oa.error_after_seconds = 3.0
    got = await _session(openai_url, account, speech_pcm(), close=False)
    assert got.last["type"] == "error" and got.last["fatal"] is True
    assert got.close_code == 1011
    assert [f["end"] for f in got.of("final")] == [2.0]
    [hold] = await books.holds(ws_id)
    assert hold.outcome == Outcome.PROVIDER_ERROR_MID_SESSION.value
    assert hold.captured == 2 * LIVE_MICRO
    await books.assert_balanced()


@pytest.fixture
async def sdk(openai_url, client, signup):
    account = await signup()
    key = (await client.post("/v1/api-keys", json={"name": "sdk"}, headers=account.headers)).json()[
        "key"
    ]
    async with openai.AsyncOpenAI(
        api_key=key, base_url=openai_url.replace("ws://", "http://") + "/v1", max_retries=0
    ) as api:
        yield api, account


async def test_a_file_is_charged_by_the_providers_duration(sdk, oa, books) -> None:
    api, account = sdk
    before = await books.state(workspace(account))
    oa.duration_skew = 1.1  # 5.59 s: within a second of our 5.08 s
    result = await api.audio.transcriptions.create(
        file=("speech.wav", speech_wav()), model="gpt-transcribe", language="en", prompt="a fox"
    )
    assert result.text.startswith("word1 word2")
    assert result.usage.seconds == 6
    assert oa.files == [
        {"model": "gpt-transcribe", "language": "en", "prompt": "a fox", "response_format": "json"}
    ]
    assert (await books.state(workspace(account))).balance == before.balance - 6 * FILE_MICRO
    await books.assert_balanced()


async def test_a_provider_duration_far_from_ours_is_charged_the_lower(sdk, oa, books) -> None:
    api, account = sdk
    oa.duration_skew = 3.0  # 15 s claimed for 5.08 s of audio
    result = await api.audio.transcriptions.create(
        file=("speech.wav", speech_wav()), model="gpt-transcribe"
    )
    assert result.usage.seconds == 6  # ours, not the provider's 16
    await books.assert_balanced()


async def test_a_provider_failure_on_a_file_is_free(sdk, oa, books) -> None:
    api, account = sdk
    before = await books.state(workspace(account))
    oa.reject_status = 503
    with pytest.raises(openai.APIStatusError) as failed:
        await api.audio.transcriptions.create(
            file=("speech.wav", speech_wav()), model="gpt-transcribe"
        )
    assert failed.value.status_code == 503
    assert (await books.state(workspace(account))).balance == before.balance
    await books.assert_balanced()
