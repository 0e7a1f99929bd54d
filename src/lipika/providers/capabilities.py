"""The capabilities beyond chat, as interfaces only: image generation, video generation, deep
research and real-time transcription. The issues that add them implement adapters behind these.

Each reports facts in its price's units (`units`: {"images": 2}, {"video_seconds": 8},
{"tasks.standard": 1}, {"audio_seconds": 41}), so that billing charges them the way it charges
tokens; failures are the `ProviderError` kinds of providers/errors.py. Long operations (video,
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


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    final: bool  # a final segment (else an interim guess that a later one replaces)


@dataclass(frozen=True, slots=True)
class TranscriptionUsage:
    units: Mapping[str, int]  # cumulative, e.g. {"audio_seconds": 41}


TranscriptionEvent = Transcript | TranscriptionUsage


class TranscriptionSession(abc.ABC):
    """One open real-time session: audio goes in, transcripts and usage come out."""

    @abc.abstractmethod
    async def send(self, audio: bytes) -> None: ...

    @abc.abstractmethod
    def events(self) -> AsyncIterator[TranscriptionEvent]: ...

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Ends the session (the last usage event follows, when the provider sends one)."""


class TranscriptionProvider(abc.ABC):
    name: str

    @abc.abstractmethod
    async def open(
        self, model: str, *, sample_rate: int, language: str | None
    ) -> TranscriptionSession:
        """Opens a streaming session, or raises a `ProviderError`."""
