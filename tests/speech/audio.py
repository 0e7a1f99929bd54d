"""Real speech for the tests: espeak-ng speaks a sentence, PyAV turns it into what clients send
(PCM16 at 16 kHz, WebM/Opus as a browser's MediaRecorder records, WAV or MP3 files)."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess

import av
import pytest

RATE = 16_000
SENTENCE = "The quick brown fox jumps over the lazy dog while the platform counts every second."


def need_espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return path


@functools.cache
def speech_wav(text: str = SENTENCE) -> bytes:
    """What espeak-ng says, as a WAV file (22,050 Hz mono)."""
    return subprocess.run(
        [need_espeak(), "--stdout", "-s", "170", text], check=True, capture_output=True
    ).stdout


def _encode(source: bytes, fmt: str, codec: str, rate: int, layout: str = "mono") -> bytes:
    out = io.BytesIO()
    with av.open(io.BytesIO(source)) as inp, av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate)
        for frame in inp.decode(audio=0):
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    container.mux(packet)
        for resampled in resampler.resample(None):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@functools.cache
def speech_pcm(text: str = SENTENCE, repeat: int = 1) -> bytes:
    """PCM16 mono at 16 kHz (raw samples, no header)."""
    raw = _encode(speech_wav(text), "s16le", "pcm_s16le", RATE)
    return raw * repeat


@functools.cache
def speech_webm(text: str = SENTENCE) -> bytes:
    """WebM/Opus at 48 kHz, as Chrome's and Firefox's MediaRecorder record it."""
    return _encode(speech_wav(text), "webm", "libopus", 48_000)


@functools.cache
def speech_mp3(text: str = SENTENCE) -> bytes:
    return _encode(speech_wav(text), "mp3", "libmp3lame", 22_050)


def frames(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
