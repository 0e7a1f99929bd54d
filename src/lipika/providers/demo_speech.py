"""The local demo transcription: deterministic words at the pace of the audio, no network.

It "hears" one word for every `word_seconds` of audio it is sent (PCM16), so its text comes
at real-time pace when the audio does, and ends a final segment every `words_per_segment`
words (or when asked to finalize). Its usage is the audio it was sent, to the sample, so tests
and demos can predict every charge. Files get the same words for their length.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from lipika.providers.base import ProviderError
from lipika.providers.capabilities import (
    BatchRequest,
    BatchTranscript,
    BatchTranscriptionProvider,
    Segment,
    Transcript,
    TranscriptionEvent,
    TranscriptionOptions,
    TranscriptionProvider,
    TranscriptionSession,
    TranscriptionUsage,
)

VOCABULARY = (
    "lipika hears every word you say and writes it down at the pace you speak it so the "
    "demo shows live captions without any provider key"
).split()


def word(index: int) -> str:
    return VOCABULARY[index % len(VOCABULARY)]


class _End:
    pass


_END = _End()


class DemoTranscriptionSession(TranscriptionSession):
    def __init__(
        self, options: TranscriptionOptions, word_seconds: float, words_per_segment: int
    ) -> None:
        self.options = options
        self.word_seconds = word_seconds
        self.words_per_segment = words_per_segment
        self.received = 0  # bytes of PCM16
        self.heard = 0  # words heard so far
        self.segment_start = 0  # the first word of the segment in progress
        self.closed = False
        self._queue: asyncio.Queue[TranscriptionEvent | _End] = asyncio.Queue()

    @property
    def seconds(self) -> float:
        return self.received / (2 * self.options.sample_rate)

    async def send(self, audio: bytes) -> None:
        if self.closed:
            raise ProviderError("the demo session is closed")
        self.received += len(audio)
        while self.heard < int(self.seconds / self.word_seconds):
            self.heard += 1
            if self.heard - self.segment_start >= self.words_per_segment:
                self._final()
            elif self.options.interim_results:
                self._put(self.segment_start, self.heard, final=False)

    def _put(self, first: int, last: int, *, final: bool) -> None:
        text = " ".join(word(i) for i in range(first, last))
        self._queue.put_nowait(
            Transcript(text, final, first * self.word_seconds, last * self.word_seconds)
        )

    def _final(self) -> None:
        if self.heard > self.segment_start:
            self._put(self.segment_start, self.heard, final=True)
            self.segment_start = self.heard

    async def finalize(self) -> None:
        self._final()

    async def events(self) -> AsyncIterator[TranscriptionEvent]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                return
            yield item

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._final()
        self._queue.put_nowait(TranscriptionUsage(self.seconds))
        self._queue.put_nowait(_END)

    async def abort(self) -> None:
        self.closed = True
        self._queue.put_nowait(_END)


class DemoTranscriptionProvider(TranscriptionProvider, BatchTranscriptionProvider):
    name = "demo"

    def __init__(self, word_seconds: float = 0.4, words_per_segment: int = 8) -> None:
        self.word_seconds = word_seconds
        self.words_per_segment = words_per_segment

    async def open(self, options: TranscriptionOptions) -> TranscriptionSession:
        return DemoTranscriptionSession(options, self.word_seconds, self.words_per_segment)

    async def transcribe(self, request: BatchRequest) -> BatchTranscript:
        """Not given a duration by the caller: the file's length is read the way the server
        measures it (the demo has no decoder of its own)."""
        from lipika.kit.audio import measure

        seconds = await asyncio.to_thread(measure, request.audio)
        words = int(seconds / self.word_seconds)
        segments = tuple(
            Segment(
                start * self.word_seconds,
                min(seconds, (start + self.words_per_segment) * self.word_seconds),
                " ".join(word(i) for i in range(start, min(words, start + self.words_per_segment))),
            )
            for start in range(0, words, self.words_per_segment)
        )
        return BatchTranscript(
            text=" ".join(s.text for s in segments),
            audio_seconds=seconds,
            language=request.language or "en",
            segments=segments,
        )
