"""Gemini image models ("Nano Banana") through google-genai's `generate_content` with image
output: one image per call (the API has no sample count), billed per image.

The chat adapter's client and error mapping are reused. A response without an image part
(the prompt blocked, or the candidate stopped for safety) is the provider's refusal.
"""

from __future__ import annotations

import aiohttp
from google.genai import errors, types

from lipika.providers.capabilities import ImageProvider, ImageRequest, ImageResult
from lipika.providers.errors import ProviderError, ProviderRejected
from lipika.providers.gemini import GeminiProvider


class GeminiImageProvider(ImageProvider):
    name = "gemini"

    def __init__(
        self, api_key: str, base_url: str | None, *, timeout: float, max_retries: int
    ) -> None:
        self._gemini = GeminiProvider(api_key, base_url, timeout=timeout, max_retries=max_retries)

    async def generate(self, request: ImageRequest) -> ImageResult:
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=request.aspect_ratio)
            if request.aspect_ratio
            else None,
        )
        images: list[bytes] = []
        content_type = "image/jpeg"
        for _ in range(request.count):
            try:
                response = await self._gemini.client.models.generate_content(
                    model=request.model, contents=request.prompt, config=config
                )
            except (errors.APIError, aiohttp.ClientError, TimeoutError) as exc:
                raise self._gemini.error(exc) from exc
            blob = _image(response)
            if blob is None:
                if images:  # made some before the refusal: charged for those only
                    break
                raise ProviderRejected(f"gemini made no image: {_why(response)}")
            images.append(blob.data or b"")
            content_type = blob.mime_type or content_type
        if not images:
            raise ProviderError("gemini: no image in the response")
        return ImageResult(tuple(images), {"images": len(images)}, content_type)

    async def aclose(self) -> None:
        await self._gemini.aclose()


def _image(response: types.GenerateContentResponse) -> types.Blob | None:
    for candidate in response.candidates or ():
        for part in (candidate.content.parts if candidate.content else None) or ():
            if part.inline_data is not None and part.inline_data.data:
                return part.inline_data
    return None


def _why(response: types.GenerateContentResponse) -> str:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        return f"the prompt was blocked ({feedback.block_reason})"
    if response.candidates and response.candidates[0].finish_reason:
        return f"finished with {response.candidates[0].finish_reason}"
    return "no candidates"
