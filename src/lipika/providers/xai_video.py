"""xAI video (Grok Imagine) on httpx: submit, then poll the request until it is done.

`POST {base}/videos/generations` `{model, prompt, duration, aspect_ratio, resolution}` answers
`{"request_id"}`; `GET {base}/videos/{request_id}` answers `{"status": "pending" | "done" |
"expired" | "failed", "video": {"url", "duration"}}` (the shape gateways and xAI's guides show;
xai-sdk polls the same over gRPC). Hand-written because xai-sdk speaks gRPC only and the REST
wire is two calls. The video's URL is a storage host: it is fetched without the key.
"""

from __future__ import annotations

from typing import Any

import httpx

from lipika.providers.capabilities import Media, Operation, VideoProvider, VideoRequest
from lipika.providers.errors import STATUS_ERRORS, ProviderError, ProviderTimeout

DEFAULT_BASE_URL = "https://api.x.ai/v1"


class XAIVideoProvider(VideoProvider):
    name = "xai"

    def __init__(self, api_key: str, base_url: str | None, *, timeout: float) -> None:
        limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._client = httpx.AsyncClient(
            base_url=(base_url or DEFAULT_BASE_URL).rstrip("/"),
            headers={"authorization": f"Bearer {api_key}"},
            timeout=limits,
        )
        self._plain = httpx.AsyncClient(timeout=limits, follow_redirects=True)

    async def start(self, request: VideoRequest) -> Operation:
        body = {
            "model": request.model,
            "prompt": request.prompt,
            "duration": request.seconds,
            "aspect_ratio": request.aspect_ratio,
            "resolution": request.resolution,
        }
        answer = await self._call("POST", "/videos/generations", body)
        request_id = answer.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProviderError("xai answered a video request without a request_id")
        return Operation(request_id, progress=0)

    async def poll(self, operation_id: str) -> Operation:
        answer = await self._call("GET", f"/videos/{operation_id}")
        status = answer.get("status")
        if status in ("pending", "queued", "processing", None):
            return Operation(operation_id, progress=answer.get("progress"))
        if status != "done":
            reason = answer.get("error") or f"the request ended {status}"
            return Operation(operation_id, "failed", error=str(reason))
        video = answer.get("video") or {}
        if not video.get("url"):
            if video.get("respect_moderation") is False:
                return Operation(operation_id, "refused", error="the video was moderated")
            return Operation(operation_id, "failed", error="done without a video")
        units = {"video_seconds": int(video["duration"])} if video.get("duration") else {}
        return Operation(
            operation_id, "succeeded", units=units, result_url=video["url"], progress=100
        )

    async def download(self, operation: Operation) -> Media:
        assert operation.result_url is not None
        try:
            response = await self._plain.get(operation.result_url)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout("the video download timed out") from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"the video download failed: {exc!r}") from exc
        if response.status_code != 200:
            raise ProviderError(f"the video download answered {response.status_code}")
        return Media(response.content, response.headers.get("content-type", "video/mp4"))

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._plain.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout("xai did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"xai could not be reached: {exc!r}") from exc
        if response.status_code not in (200, 202):
            try:
                message = response.json().get("error") or response.text[:300]
            except ValueError:
                message = response.text[:300]
            kind = STATUS_ERRORS.get(response.status_code, ProviderError)
            raise kind(f"xai answered {response.status_code}: {message}")
        try:
            return dict(response.json())
        except (ValueError, TypeError) as exc:
            raise ProviderError("xai answered something other than a JSON object") from exc
