"""The capabilities beyond chat, as interfaces only: image generation, video generation, deep
research and real-time transcription. The issues that add them implement adapters behind these.

Each reports facts in its price's units (`units`: {"images": 2}, {"video_seconds": 8},
{"tasks.standard": 1}; transcription reports audio seconds), so that billing charges them the way
it charges tokens; failures are the `ProviderError` kinds of providers/errors.py. Long operations (video,
research) are started and then polled (or answered by a webhook): their operation id is what a
job row keeps, so that a job survives the pod that started it.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class ImageRequest:
    model: str
    prompt: str
    count: int = 1
    size: str | None = None
    quality: str | None = None
    aspect_ratio: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    images: tuple[bytes, ...]
    units: Mapping[str, int]  # what the provider says it made, e.g. {"images": 2}, or tokens
    content_type: str = "image/png"


class ImageProvider(abc.ABC):
    name: str

    @abc.abstractmethod
    async def generate(self, request: ImageRequest) -> ImageResult:
        """Makes the images, or raises a `ProviderError`."""

    async def aclose(self) -> None:  # noqa: B027 - optional: most adapters hold no client
        """Closes the adapter's HTTP client, if it has one."""


# "refused": the provider finished but filtered the output (content policy): nothing made.
OperationState = Literal["running", "succeeded", "failed", "refused"]


@dataclass(frozen=True, slots=True)
class Operation:
    """A long provider operation: its id, where it stands, and (once it ended) what it used."""

    id: str
    state: OperationState = "running"
    units: Mapping[str, int] = field(default_factory=dict)
    result_url: str | None = None
    error: str | None = None
    progress: int | None = None  # percent, when the provider says


@dataclass(frozen=True, slots=True)
class VideoRequest:
    model: str
    prompt: str
    seconds: int
    aspect_ratio: str = "16:9"
    resolution: str = "720p"
    first_frame: bytes | None = None
    first_frame_type: str | None = None  # its MIME type


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes
    content_type: str


class VideoProvider(abc.ABC):
    name: str

    @abc.abstractmethod
    async def start(self, request: VideoRequest) -> Operation:
        """Starts the generation; returns its operation (state "running")."""

    @abc.abstractmethod
    async def poll(self, operation_id: str) -> Operation:
        """Where the operation stands; `units` once it succeeded (e.g. {"video_seconds": 8})."""

    @abc.abstractmethod
    async def download(self, operation: Operation) -> Media:
        """The finished operation's video."""

    async def cancel(self, operation_id: str) -> bool:
        """Asks the provider to stop; False when it cannot (then it may still finish)."""
        return False

    async def aclose(self) -> None:  # noqa: B027 - optional: most adapters hold no client
        """Closes the adapter's HTTP client, if it has one."""


@dataclass(frozen=True, slots=True)
class ResearchRequest:
    query: str
    mode: str  # the price book's per-task mode: "fast", "standard", "heavy"
    webhook_url: str | None = None


class ResearchProvider(abc.ABC):
    name: str

    @abc.abstractmethod
    async def start(self, request: ResearchRequest) -> Operation: ...

    @abc.abstractmethod
    async def poll(self, operation_id: str) -> Operation: ...

    @abc.abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> Operation:
        """The operation a signed callback reports; raises `ProviderRejected` if unsigned."""


AudioFormat = Literal["pcm16", "webm-opus"]
PCM16 = "pcm16"  # signed 16-bit little-endian mono, at the session's sample rate
WEBM_OPUS = "webm-opus"  # what a browser's MediaRecorder records (audio/webm;codecs=opus)


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    """What a real-time session is opened with."""

    model: str  # the provider's own model name
    audio_format: AudioFormat = "pcm16"
    sample_rate: int = 16_000
    language: str | None = None
    interim_results: bool = True


@dataclass(frozen=True, slots=True)
class Transcript:
    """A piece of transcript; `start`/`end` are seconds from the start of the session's audio."""

    text: str
    final: bool  # a final segment (else an interim guess that a later one replaces)
    start: float = 0.0
    end: float = 0.0


@dataclass(frozen=True, slots=True)
class TranscriptionUsage:
    """The provider's own (cumulative) count of the audio it transcribed, in seconds."""

    audio_seconds: float


TranscriptionEvent = Transcript | TranscriptionUsage


class TranscriptionSession(abc.ABC):
    """One open real-time session: audio goes in, transcripts and usage come out.

    `events()` ends after `aclose()` has flushed the provider (its last usage included), and
    raises a `ProviderError` when the provider fails or drops the session.
    """

    @abc.abstractmethod
    async def send(self, audio: bytes) -> None:
        """Hands audio (in the session's format) to the provider; waits while it is busy."""

    @abc.abstractmethod
    async def finalize(self) -> None:
        """Asks for the final transcript of the audio sent so far (the session stays open)."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[TranscriptionEvent]: ...

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Ends the audio: the provider flushes its last finals and usage, then `events()`
        ends."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Drops the connection at once (nothing more is read)."""


class TranscriptionProvider(abc.ABC):
    name: str
    # The audio formats the provider takes as they are; any other is decoded to PCM16 first.
    accepts: frozenset[str] = frozenset({PCM16})

    @property
    def available(self) -> bool:
        return True

    @abc.abstractmethod
    async def open(self, options: TranscriptionOptions) -> TranscriptionSession:
        """Opens a streaming session, or raises a `ProviderError`."""

    async def aclose(self) -> None:  # noqa: B027  (most adapters hold nothing to close)
        """Closes what the adapter holds open (its HTTP client)."""


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class BatchRequest:
    model: str
    audio: bytes
    filename: str
    language: str | None = None
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class BatchTranscript:
    """A whole file's transcript, and the audio duration the provider says it transcribed."""

    text: str
    audio_seconds: float | None  # None when the provider did not say
    language: str | None = None
    segments: tuple[Segment, ...] = ()


class BatchTranscriptionProvider(abc.ABC):
    name: str

    @property
    def available(self) -> bool:
        return True

    @abc.abstractmethod
    async def transcribe(self, request: BatchRequest) -> BatchTranscript:
        """Transcribes a whole file, or raises a `ProviderError`."""

    async def aclose(self) -> None:  # noqa: B027  (most adapters hold nothing to close)
        """Closes what the adapter holds open (its HTTP client)."""
