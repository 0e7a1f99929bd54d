"""The local demo image and video providers: deterministic, no network, a few seconds of work.

The video's operation id carries its start time and length, so any process can poll it (a job
adopted after its pod died resumes like a real provider's). Outputs are SVG files (an animated
one for video), clearly labelled as demo output, so the embedded default shows the whole job
flow without a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from html import escape

from lipika.providers.capabilities import (
    ImageProvider,
    ImageRequest,
    ImageResult,
    Media,
    Operation,
    VideoProvider,
    VideoRequest,
)
from lipika.providers.errors import ProviderRejected

SVG = "image/svg+xml"
_PREFIX = "demo-video"


def _colour(text: str) -> str:
    return "#" + hashlib.sha256(text.encode()).hexdigest()[:6]


def demo_image(prompt: str, index: int = 0) -> bytes:
    """The demo's image of a prompt: the same prompt always draws the same picture."""
    colour = _colour(f"{prompt}:{index}")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512">'
        f'<rect width="512" height="512" fill="{colour}"/>'
        '<text x="16" y="40" font-size="20" fill="white">Lipika demo image</text>'
        f'<text x="16" y="480" font-size="16" fill="white">{escape(prompt[:60])}</text>'
        "</svg>"
    ).encode()


def demo_video(prompt: str, seconds: int) -> bytes:
    """An animated SVG `seconds` long: a dot crossing the frame."""
    colour = _colour(prompt)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360">'
        f'<rect width="640" height="360" fill="{colour}"/>'
        '<text x="16" y="36" font-size="20" fill="white">Lipika demo video</text>'
        f'<text x="16" y="340" font-size="16" fill="white">{escape(prompt[:70])}</text>'
        '<circle cx="0" cy="180" r="24" fill="white">'
        f'<animate attributeName="cx" from="0" to="640" dur="{seconds}s" repeatCount="1"/>'
        "</circle></svg>"
    ).encode()


class DemoImageProvider(ImageProvider):
    name = "demo"

    def __init__(self, work_seconds: float = 1.0) -> None:
        self.work_seconds = work_seconds

    async def generate(self, request: ImageRequest) -> ImageResult:
        if not request.prompt.strip():
            raise ProviderRejected("the prompt is empty")
        await asyncio.sleep(self.work_seconds)
        images = tuple(demo_image(request.prompt, i) for i in range(request.count))
        return ImageResult(images, {"images": request.count}, SVG)


class DemoVideoProvider(VideoProvider):
    """`work_seconds` of simulated generation per video, whatever its length."""

    name = "demo"

    def __init__(self, work_seconds: float = 4.0) -> None:
        self.work_seconds = work_seconds
        self._prompts: dict[str, str] = {}  # for the video's label; another process draws "demo"

    async def start(self, request: VideoRequest) -> Operation:
        started = int(time.time() * 1000)
        prompt_id = hashlib.sha256(request.prompt.encode()).hexdigest()[:16]
        op_id = (
            f"{_PREFIX}:{started}:{request.seconds}:{request.resolution}:{prompt_id}:"
            f"{uuid.uuid4().hex[:8]}"
        )
        self._prompts[prompt_id] = request.prompt
        return Operation(op_id, progress=0)

    async def poll(self, operation_id: str) -> Operation:
        started, seconds, _ = self._parse(operation_id)
        elapsed = time.time() - started / 1000
        if elapsed < self.work_seconds:
            return Operation(operation_id, progress=min(99, int(100 * elapsed / self.work_seconds)))
        return Operation(
            operation_id,
            "succeeded",
            units={"video_seconds": seconds},
            result_url=operation_id,
            progress=100,
        )

    async def download(self, operation: Operation) -> Media:
        _, seconds, _ = self._parse(operation.id)
        prompt_id = operation.id.split(":")[4]
        return Media(demo_video(self._prompts.get(prompt_id, "demo"), seconds), SVG)

    async def cancel(self, operation_id: str) -> bool:
        return True

    @staticmethod
    def _parse(operation_id: str) -> tuple[int, int, str]:
        try:
            prefix, started, seconds, resolution, *_ = operation_id.split(":")
            if prefix != _PREFIX:
                raise ValueError(prefix)
            return int(started), int(seconds), resolution
        except ValueError:
            raise ProviderRejected(f"not a demo operation: {operation_id!r}") from None
