"""Image jobs: one provider call that returns the images (no operation to resume)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from lipika.billing.pricebook import PriceBook
from lipika.jobs.kinds.base import Admission, Done, JobKind, Output, Step, parse_params, tool_price
from lipika.jobs.models import Job
from lipika.jobs.schemas import ImageParams
from lipika.providers.capabilities import ImageProvider, ImageRequest

# The most image-output tokens one 1024x1024 image may take, by quality (OpenAI's published
# counts for its GPT image models; "auto" may pick high). Larger sizes scale by area.
OUTPUT_TOKENS_PER_MEGAPIXEL = {"low": 272, "medium": 1056, "high": 4160, "auto": 4160}
BASE_AREA = 1024 * 1024
LARGEST_AREA = 3840 * 2160


class ImageKind(JobKind):
    name = "image"
    resumable = False

    def __init__(
        self, providers: Mapping[str, ImageProvider], *, deadline: timedelta = timedelta(minutes=5)
    ) -> None:
        self.providers = providers
        self.deadline = deadline

    def admission(self, params: Mapping[str, Any], price_book: PriceBook) -> Admission:
        parsed = parse_params(ImageParams, params)
        price = tool_price(price_book, "image", parsed.model)
        assert price.provider is not None
        if "images" in price.rates:
            max_usage = {"images": parsed.n}
        else:
            max_usage = token_ceiling(parsed)
        return Admission(
            provider=price.provider,
            model=parsed.model,
            price=price.name,
            max_usage=max_usage,
            params=parsed.model_dump(exclude_none=True),
        )

    def serves(self, provider: str) -> bool:
        return provider in self.providers

    async def start(self, job: Job) -> Step:
        params = ImageParams.model_validate(job.params)
        result = await self.providers[job.provider].generate(
            ImageRequest(
                model=job.model,
                prompt=params.prompt,
                count=params.n,
                size=params.size,
                quality=params.quality,
                aspect_ratio=params.aspect_ratio,
            )
        )
        outputs = tuple(Output(image, result.content_type) for image in result.images)
        return Done(outputs, dict(result.units))

    async def poll(self, job: Job) -> Step:  # never called: the kind is not resumable
        raise NotImplementedError


def token_ceiling(params: ImageParams) -> dict[str, int]:
    """The most tokens a token-billed image request may use: every prompt character a token
    (a token is never shorter), the output at the quality's count scaled by the image's area."""
    area = LARGEST_AREA
    if params.size and params.size != "auto":
        width, _, height = params.size.partition("x")
        area = int(width) * int(height)
    per_image = OUTPUT_TOKENS_PER_MEGAPIXEL[params.quality or "auto"]
    output = math.ceil(per_image * max(area, BASE_AREA) / BASE_AREA) * params.n
    return {"text_input_tokens": len(params.prompt) + 64, "image_output_tokens": output}
