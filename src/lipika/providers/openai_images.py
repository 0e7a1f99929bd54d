"""OpenAI image generation (`gpt-image-2*`) through the official SDK's `images.generate`.

GPT image models always answer base64 and report token `usage` (text and image input, image
output), which is what the price book bills; there is no per-image price.
"""

from __future__ import annotations

import base64
from typing import Any

import openai

from lipika.providers.capabilities import ImageProvider, ImageRequest, ImageResult
from lipika.providers.errors import STATUS_ERRORS, ProviderError, ProviderTimeout

_CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}


class OpenAIImageProvider(ImageProvider):
    name = "openai"
    default_base_url: str | None = None

    def __init__(
        self, api_key: str, base_url: str | None, *, timeout: float, max_retries: int
    ) -> None:
        self.client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    async def generate(self, request: ImageRequest) -> ImageResult:
        params: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "n": request.count,
        }
        if request.size:
            params["size"] = request.size
        if request.quality:
            params["quality"] = request.quality
        try:
            response = await self.client.images.generate(**params)
        except openai.APITimeoutError as exc:
            raise ProviderTimeout("openai: the image request timed out") from exc
        except openai.APIStatusError as exc:
            kind = STATUS_ERRORS.get(exc.status_code, ProviderError)
            raise kind(f"openai answered {exc.status_code}: {_message(exc)}") from exc
        except openai.APIError as exc:
            raise ProviderError(f"openai: {exc.message}") from exc
        images = tuple(base64.b64decode(d.b64_json) for d in response.data or () if d.b64_json)
        if not images:
            raise ProviderError("openai: the response has no images")
        usage = response.usage
        if usage is None:
            raise ProviderError("openai: the response reports no usage, so it cannot be billed")
        details = usage.input_tokens_details
        units = {
            "text_input_tokens": details.text_tokens if details else usage.input_tokens,
            "image_input_tokens": details.image_tokens if details else 0,
            "image_output_tokens": usage.output_tokens,
        }
        content_type = _CONTENT_TYPES.get(response.output_format or "png", "image/png")
        return ImageResult(images, units, content_type)

    async def aclose(self) -> None:
        await self.client.close()


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return exc.message


class XAIImageProvider(OpenAIImageProvider):
    """xAI's Grok image models on the same wire (OpenAI-compatible, at xAI's base URL): no
    size or quality, `response_format` asked for as base64, JPEG out, priced per image."""

    name = "xai"
    default_base_url = "https://api.x.ai/v1"

    def __init__(
        self, api_key: str, base_url: str | None, *, timeout: float, max_retries: int
    ) -> None:
        super().__init__(
            api_key, base_url or self.default_base_url, timeout=timeout, max_retries=max_retries
        )

    async def generate(self, request: ImageRequest) -> ImageResult:
        extra = {"aspect_ratio": request.aspect_ratio} if request.aspect_ratio else None
        try:
            response = await self.client.images.generate(
                model=request.model,
                prompt=request.prompt,
                n=request.count,
                response_format="b64_json",
                extra_body=extra,
            )
        except openai.APITimeoutError as exc:
            raise ProviderTimeout("xai: the image request timed out") from exc
        except openai.APIStatusError as exc:
            kind = STATUS_ERRORS.get(exc.status_code, ProviderError)
            raise kind(f"xai answered {exc.status_code}: {_message(exc)}") from exc
        except openai.APIError as exc:
            raise ProviderError(f"xai: {exc.message}") from exc
        images = tuple(base64.b64decode(d.b64_json) for d in response.data or () if d.b64_json)
        if not images:
            raise ProviderError("xai: the response has no images")
        return ImageResult(images, {"images": len(images)}, "image/jpeg")
