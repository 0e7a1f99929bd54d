"""Audio as the server measures it: PCM16 by its byte count, anything else by decoding it with
PyAV (FFmpeg's decoders, in the wheel), never by a container's own claim of its length.

Real-time WebM/Opus (what a browser's MediaRecorder records) is decoded as it arrives, in a
thread of its own (FFmpeg's demuxer reads a blocking file), to PCM16 mono: that is what is
counted, and what providers that take only PCM are sent.
"""

from __future__ import annotations

import asyncio
import io
import queue
import threading
from collections.abc import Callable

import av

from lipika.errors import LipikaError

SAMPLE_WIDTH = 2  # PCM16
# FFmpeg reads its input in blocks of this size; a small one keeps a live decoder close to
# what has arrived (the demuxer waits for a whole block before it hands on a packet).
_LIVE_BLOCK = 4096


class UnreadableAudio(LipikaError):
    status_code = 400
    code = "unreadable_audio"


def pcm_seconds(nbytes: int, sample_rate: int) -> float:
    return nbytes / (SAMPLE_WIDTH * sample_rate)


def measure(data: bytes) -> float:
    """Seconds of audio in a whole file, by decoding every frame (the first audio stream)."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise UnreadableAudio("the file holds no audio stream", param="file")
            stream = container.streams.audio[0]
            samples = 0
            rate = stream.codec_context.sample_rate or stream.rate
            for frame in container.decode(stream):
                samples += frame.samples
                rate = frame.sample_rate or rate
    except UnreadableAudio:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise UnreadableAudio(f"the file is not audio we can read: {exc}", param="file") from None
    if not rate or samples == 0:
        raise UnreadableAudio("the file holds no audio", param="file")
    return samples / rate


class Resampler:
    """PCM16 mono from one sample rate to another (OpenAI's realtime API takes 24 kHz)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)

    def __call__(self, pcm: bytes) -> bytes:
        if self.from_rate == self.to_rate or not pcm:
            return pcm
        samples = len(pcm) // SAMPLE_WIDTH
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.sample_rate = self.from_rate
        frame.planes[0].update(pcm[: samples * SAMPLE_WIDTH])
        return b"".join(_pcm(out) for out in self._resampler.resample(frame))


class _BlockingInput(io.RawIOBase):
    """The file FFmpeg reads: chunks handed over by the event loop, blocking until one comes."""

    def __init__(self) -> None:
        self.chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._pending = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._ended:
            chunk = self.chunks.get()
            if chunk is None:
                self._ended = True
            else:
                self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class LiveDecoder:
    """Decodes a WebM/Opus stream as it arrives; `pcm` yields PCM16 mono at `sample_rate`,
    then None at its end, or raises `UnreadableAudio`."""

    def __init__(self, sample_rate: int = 16_000) -> None:
        self.sample_rate = sample_rate
        self._input = _BlockingInput()
        self._out: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="webm-decoder", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        self._input.chunks.put(data)

    def end(self) -> None:
        self._input.chunks.put(None)

    async def pcm(self) -> bytes | None:
        item = await self._out.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def _emit(self, item: bytes | BaseException | None) -> None:
        self._loop.call_soon_threadsafe(self._out.put_nowait, item)

    def _run(self) -> None:
        emit: Callable[[bytes | BaseException | None], None] = self._emit
        try:
            stream = io.BufferedReader(self._input, buffer_size=_LIVE_BLOCK)
            with av.open(
                stream,
                mode="r",
                format="webm",
                buffer_size=_LIVE_BLOCK,
                options={"probesize": "4096", "analyzeduration": "0"},
            ) as container:
                if not container.streams.audio:
                    raise UnreadableAudio("the stream holds no audio")
                resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
                for frame in container.decode(container.streams.audio[0]):
                    for out in resampler.resample(frame):
                        emit(_pcm(out))
                for out in resampler.resample(None):
                    emit(_pcm(out))
        except UnreadableAudio as exc:
            emit(exc)
        except Exception as exc:  # FFmpeg's errors, a broken container
            emit(UnreadableAudio(f"the audio stream is not WebM/Opus we can read: {exc}"))
        else:
            emit(None)
        finally:
            # Anything still queued is dropped: the thread ends with its input.
            while True:
                try:
                    if self._input.chunks.get_nowait() is None:
                        break
                except queue.Empty:
                    break

    def close(self) -> None:
        """Ends the input, so the thread finishes (its output is no longer read)."""
        self.end()


def _pcm(frame: av.AudioFrame) -> bytes:
    return bytes(frame.planes[0])[: frame.samples * SAMPLE_WIDTH]
