"""Veo video through the Gemini API's long-running operation, on httpx.

Hand-written rather than on google-genai: from 3.0 the SDK refuses `models.generate_videos`
with an API key ("only supported in Gemini Enterprise Agent Platform mode"), while the REST
path it used to call, `POST /v1beta/models/{model}:predictLongRunning`, is what the Gemini API
documents for keys. The wire is three calls: submit (an operation name back), poll
`GET /v1beta/{name}` until `done`, download the sample's file URI (a redirect to the bytes).
A done operation with no samples and `raiMediaFilteredCount` was filtered for content: a free
refusal, not a failure of ours.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import httpx

from lipika.providers.capabilities import Media, Operation, VideoProvider, VideoRequest
from lipika.providers.errors import (
    STATUS_ERRORS,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


class VeoProvider(VideoProvider):
    name = "gemini"

    def __init__(self, api_key: str, base_url: str | None, *, timeout: float) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._host = urlsplit(self.base_url).netloc
        limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers={"x-goog-api-key": api_key}, timeout=limits
        )
        self._plain = httpx.AsyncClient(timeout=limits)  # for hosts that must not see the key

    async def start(self, request: VideoRequest) -> Operation:
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.first_frame is not None:
            instance["image"] = {
                "bytesBase64Encoded": base64.b64encode(request.first_frame).decode(),
                "mimeType": request.first_frame_type or "image/png",
            }
        body = {
            "instances": [instance],
            "parameters": {
                "aspectRatio": request.aspect_ratio,
                "durationSeconds": request.seconds,
                "resolution": request.resolution,
                "sampleCount": 1,
            },
        }
        answer = await self._call(
            "POST", f"/v1beta/models/{request.model}:predictLongRunning", body
        )
        name = answer.get("name")
        if not isinstance(name, str) or not name:
            raise ProviderError("the provider answered an operation without a name")
        return Operation(name, progress=0)

    async def poll(self, operation_id: str) -> Operation:
        answer = await self._call("GET", f"/v1beta/{operation_id}")
        if not answer.get("done"):
            return Operation(operation_id)
        if error := answer.get("error"):
            return Operation(operation_id, "failed", error=str(error.get("message") or error))
        video = (answer.get("response") or {}).get("generateVideoResponse") or {}
        samples = [
            s for s in video.get("generatedSamples") or [] if (s.get("video") or {}).get("uri")
        ]
        if not samples:
            reasons = "; ".join(video.get("raiMediaFilteredReasons") or [])
            if video.get("raiMediaFilteredCount"):
                return Operation(operation_id, "refused", error=reasons or "filtered for content")
            return Operation(operation_id, "failed", error="the operation ended without a video")
        return Operation(
            operation_id,
            "succeeded",
            units={"videos": len(samples)},
            result_url=samples[0]["video"]["uri"],
            progress=100,
        )

    async def download(self, operation: Operation) -> Media:
        if operation.result_url is None:
            raise ProviderError("the operation has no video to download")
        try:
            response = await self._follow(httpx.URL(operation.result_url))
        except httpx.TimeoutException as exc:
            raise ProviderTimeout("the video download timed out") from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"the video download failed: {exc!r}") from exc
        if response.status_code != 200:
            raise _error(response)
        return Media(response.content, response.headers.get("content-type", "video/mp4"))

    async def _follow(self, url: httpx.URL, hops: int = 5) -> httpx.Response:
        """GETs `url`, following redirects by hand: the key goes to the API's own host only
        (the file URI is the API's; where it redirects, a storage host, is not)."""
        for _ in range(hops):
            client = self._client if url.netloc.decode() == self._host else self._plain
            response = await client.get(url)
            if not response.is_redirect:
                return response
            url = url.join(response.headers["location"])
        raise ProviderError("the video download redirected too many times")

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._plain.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout("the Gemini API did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"the Gemini API could not be reached: {exc!r}") from exc
        if response.status_code != 200:
            raise _error(response)
        try:
            answer = response.json()
        except ValueError as exc:
            raise ProviderError("the Gemini API answered something other than JSON") from exc
        if not isinstance(answer, dict):
            raise ProviderError("the Gemini API answered an unexpected shape")
        return answer


def _error(response: httpx.Response) -> ProviderError:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    kind = STATUS_ERRORS.get(response.status_code, ProviderError)
    if kind is ProviderRejected and response.status_code == 404:
        message = f"not found: {message}"
    return kind(f"Gemini API {response.status_code}: {message}")
