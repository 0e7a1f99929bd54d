"""Request and response bodies of the jobs API (and the job kinds' parameters)."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lipika.jobs.models import JobStatus

Prompt = Annotated[str, Field(min_length=1, max_length=32_000)]
ModelName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[\w.:-]+$")]
MAX_FIRST_FRAME_BYTES = 3 * 1024 * 1024


class FirstFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(
        description="the image, base64", max_length=4 * MAX_FIRST_FRAME_BYTES // 3 + 4
    )
    mime_type: Literal["image/png", "image/jpeg", "image/webp"] = "image/png"

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64") from None
        return value


class VideoParams(BaseModel):
    """A video to generate."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    model: ModelName = "demo"
    seconds: int = Field(8, ge=1, le=60, description="length of the video (Veo: 4, 6 or 8)")
    aspect_ratio: Literal["16:9", "9:16"] = "16:9"
    resolution: Literal["480p", "720p", "1080p", "4k"] = "720p"
    first_frame: FirstFrame | None = None


class ImageParams(BaseModel):
    """Images to generate (one job, `n` images)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    model: ModelName = "demo"
    n: int = Field(1, ge=1, le=10)
    size: str | None = Field(None, max_length=20, pattern=r"^(auto|\d{2,5}x\d{2,5})$")
    quality: Literal["low", "medium", "high", "auto"] | None = None
    aspect_ratio: str | None = Field(None, max_length=10, pattern=r"^\d{1,2}:\d{1,2}$")


class JobCreate(BaseModel):
    """A job of any kind: its parameters are the kind's (`VideoParams`, `ImageParams`,
    `ResearchParams`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["video", "image", "research"]
    params: dict[str, Any]


class JobOutput(BaseModel):
    index: int
    content_type: str
    bytes: int


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    object: Literal["job"] = "job"
    id: uuid.UUID
    kind: str
    model: str
    status: JobStatus
    progress: int = Field(description="percent, 0-100")
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    deadline: datetime
    attempts: int
    outcome: str | None = Field(description="the charge-policy outcome, once settled")
    credits_held: int | None = Field(description="micro-credits held at submit")
    credits_charged: int | None = Field(description="micro-credits charged, once settled")
    usage: dict[str, int] | None
    outputs: list[JobOutput]
    error: JobError | None


class JobPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobOut]
    next_cursor: str | None = Field(description="pass as `cursor` to read the next (older) page")


class JobStatusEvent(BaseModel):
    """Where the job stands (the first frame of a stream, and each change)."""

    type: Literal["status"] = "status"
    job: JobOut


class JobProgressEvent(BaseModel):
    type: Literal["progress"] = "progress"
    progress: int


class JobDoneEvent(BaseModel):
    """Terminal: the job succeeded."""

    type: Literal["done"] = "done"
    job: JobOut


class JobErrorEvent(BaseModel):
    """Terminal: the job failed or was cancelled; `error` has the API's error shape."""

    type: Literal["error"] = "error"
    error: dict[str, Any]
    job: JobOut


JobEvent = Annotated[
    JobStatusEvent | JobProgressEvent | JobDoneEvent | JobErrorEvent,
    Field(discriminator="type"),
]


# -- OpenAI-compatible images -------------------------------------------------------------


class ImageGenerationRequest(BaseModel):
    """`POST /v1/images/generations`, as OpenAI's SDK sends it (unknown fields are ignored,
    as newer SDKs add them)."""

    model_config = ConfigDict(extra="ignore")

    prompt: Prompt
    model: ModelName = "demo"
    n: int = Field(1, ge=1, le=10)
    size: str | None = Field(None, max_length=20, pattern=r"^(auto|\d{2,5}x\d{2,5})$")
    quality: Literal["low", "medium", "high", "auto"] | None = None
    response_format: Literal["b64_json", "url"] | None = None


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None


class ImageTokens(BaseModel):
    text_tokens: int = 0
    image_tokens: int = 0


class ImageUsage(BaseModel):
    """The provider's token usage, for token-billed models."""

    input_tokens: int = 0
    input_tokens_details: ImageTokens = Field(default_factory=ImageTokens)
    output_tokens: int = 0
    output_tokens_details: ImageTokens = Field(default_factory=ImageTokens)
    total_tokens: int = 0


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: str | None = None
    usage: ImageUsage | None = None
