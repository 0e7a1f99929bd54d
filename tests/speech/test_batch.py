"""File transcription through the official OpenAI SDK (`audio.transcriptions.create`) on a real
socket: every response format, charged per audio second from a duration we measure
ourselves; 413 over the size limit, 400 for a file that is not audio, 402 without credits."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.speech.audio import speech_mp3, speech_wav, speech_webm
from tests.speech.conftest import RATE_MICRO, workspace


@pytest.fixture
async def sdk(speech_url, client, signup):
    account = await signup()
    key = (await client.post("/v1/api-keys", json={"name": "sdk"}, headers=account.headers)).json()[
        "key"
    ]
    base = speech_url.replace("ws://", "http://") + "/v1"
    async with openai.AsyncOpenAI(api_key=key, base_url=base, max_retries=0) as api:
        yield api, account


async def test_json_is_charged_by_the_measured_seconds(sdk, books) -> None:
    api, account = sdk
    before = await books.state(workspace(account))
    result = await api.audio.transcriptions.create(file=("speech.wav", speech_wav()), model="demo")
    assert result.text.startswith("lipika hears every word")
    assert result.usage.type == "duration"
    assert result.usage.seconds == 6  # 5.08 s, rounded up
    after = await books.state(workspace(account))
    assert before.balance - after.balance == 6 * RATE_MICRO
    assert after.held == 0
    await books.assert_balanced()


@pytest.mark.parametrize("audio", [speech_mp3, speech_webm], ids=["mp3", "webm"])
async def test_other_containers_are_measured_alike(sdk, books, audio) -> None:
    api, _ = sdk
    result = await api.audio.transcriptions.create(file=("speech", audio()), model="demo")
    assert result.usage.seconds == 6
    await books.assert_balanced()


async def test_every_response_format(sdk, books) -> None:
    api, _ = sdk
    wav = ("speech.wav", speech_wav())
    text = await api.audio.transcriptions.create(file=wav, model="demo", response_format="text")
    assert isinstance(text, str) and text.startswith("lipika hears")
    verbose = await api.audio.transcriptions.create(
        file=wav, model="demo", response_format="verbose_json", language="en"
    )
    assert abs(verbose.duration - 5.08) < 0.01
    assert verbose.language == "en"
    assert [round(s.start, 1) for s in verbose.segments] == [0.0, 3.2]
    assert " ".join(s.text for s in verbose.segments) == verbose.text
    srt = await api.audio.transcriptions.create(file=wav, model="demo", response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:03,200\nlipika hears")
    vtt = await api.audio.transcriptions.create(file=wav, model="demo", response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:03.200\n")
    await books.assert_balanced()


async def test_a_file_over_the_limit_is_413_and_not_audio_is_400(sdk, books) -> None:
    api, account = sdk
    before = await books.state(workspace(account))
    with pytest.raises(openai.APIStatusError) as too_big:
        await api.audio.transcriptions.create(file=("big.wav", b"\0" * 400_000), model="demo")
    assert too_big.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as unreadable:
        await api.audio.transcriptions.create(
            file=("notes.txt", b"hello there " * 100), model="demo"
        )
    assert unreadable.value.body["code"] == "unreadable_audio"
    with pytest.raises(openai.NotFoundError):
        await api.audio.transcriptions.create(file=("speech.wav", speech_wav()), model="whisper-9")
    assert (await books.state(workspace(account))).balance == before.balance
    assert await books.holds(workspace(account)) == []
    await books.assert_balanced()


async def test_no_credits_for_the_file_is_402_before_the_provider(sdk, books) -> None:
    api, account = sdk
    await books.set_available(workspace(account), 5 * RATE_MICRO)  # 5 s; the file needs 7 held
    with pytest.raises(openai.APIStatusError) as refused:
        await api.audio.transcriptions.create(file=("speech.wav", speech_wav()), model="demo")
    assert refused.value.status_code == 402
    await books.assert_balanced()


async def test_anonymous_and_form_errors(speech_client: httpx.AsyncClient, signup) -> None:
    anonymous = await speech_client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", b"x")}, data={"model": "demo"}
    )
    assert anonymous.status_code == 401
    account = await signup()
    missing = await speech_client.post(
        "/v1/audio/transcriptions", data={"model": "demo"}, headers=account.headers
    )
    assert missing.status_code == 422
    bad_format = await speech_client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", speech_wav())},
        data={"model": "demo", "response_format": "docx"},
        headers=account.headers,
    )
    assert bad_format.status_code == 422
