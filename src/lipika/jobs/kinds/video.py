"""Video jobs: submit to the provider's long-running operation, poll it, download the video."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from lipika.billing.policy import Outcome
from lipika.billing.pricebook import PriceBook
from lipika.jobs.errors import InvalidJob
from lipika.jobs.kinds.base import (
    Accepted,
    Admission,
    Done,
    Failed,
    JobKind,
    Output,
    Progress,
    Step,
    parse_params,
    tool_price,
)
from lipika.jobs.models import Job
from lipika.jobs.schemas import VideoParams
from lipika.providers.capabilities import VideoProvider, VideoRequest


class VideoKind(JobKind):
    name = "video"

    def __init__(
        self,
        providers: Mapping[str, VideoProvider],
        *,
        poll_seconds: float = 5.0,
        deadline: timedelta = timedelta(minutes=30),
    ) -> None:
        self.providers = providers
        self.poll_seconds = poll_seconds
        self.deadline = deadline

    def admission(self, params: Mapping[str, Any], price_book: PriceBook) -> Admission:
        parsed = parse_params(VideoParams, params)
        price = tool_price(price_book, "video", parsed.model)
        unit = f"video_seconds.{parsed.resolution}"
        if unit not in price.rates:
            raise InvalidJob(
                f"{parsed.model} does not make {parsed.resolution} video", param="resolution"
            )
        assert price.provider is not None
        return Admission(
            provider=price.provider,
            model=parsed.model,
            price=price.name,
            max_usage={unit: parsed.seconds},
            params=parsed.model_dump(exclude_none=True),
        )

    def serves(self, provider: str) -> bool:
        return provider in self.providers

    async def start(self, job: Job) -> Step:
        params = VideoParams.model_validate(job.params)
        frame = params.first_frame
        operation = await self.providers[job.provider].start(
            VideoRequest(
                model=job.model,
                prompt=params.prompt,
                seconds=params.seconds,
                aspect_ratio=params.aspect_ratio,
                resolution=params.resolution,
                first_frame=base64.b64decode(frame.data) if frame else None,
                first_frame_type=frame.mime_type if frame else None,
            )
        )
        return Accepted(operation.id)

    async def poll(self, job: Job) -> Step:
        assert job.operation_id is not None
        provider = self.providers[job.provider]
        operation = await provider.poll(job.operation_id)
        match operation.state:
            case "running":
                return Progress(operation.progress)
            case "refused":
                return Failed(
                    Outcome.REFUSED_BY_PROVIDER,
                    "content_filtered",
                    operation.error or "the provider filtered the video (content policy)",
                )
            case "failed":
                return Failed(
                    Outcome.PROVIDER_ERROR_BEFORE_OUTPUT,
                    "provider_error",
                    operation.error or "the provider failed the generation",
                )
        media = await provider.download(operation)
        return Done((Output(media.data, media.content_type),), _usage(operation.units, job))

    async def cancel(self, job: Job) -> bool:
        if job.operation_id is None or job.provider not in self.providers:
            return False
        return await self.providers[job.provider].cancel(job.operation_id)


def _usage(units: Mapping[str, int], job: Job) -> dict[str, int]:
    """The seconds made, at the job's resolution: what the provider says, else the seconds
    asked for times the videos it made (Veo reports samples, not seconds)."""
    params = VideoParams.model_validate(job.params)
    seconds = units.get("video_seconds", params.seconds * units.get("videos", 1))
    return {f"video_seconds.{params.resolution}": seconds}
