from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LANGUAGE = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"


class LiveOptions(BaseModel):
    """A live session's query parameters (nothing secret goes in the URL)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=100, pattern=r"^[\w.:-]+$")
    encoding: Literal["pcm16", "webm-opus"] = "pcm16"
    sample_rate: int = Field(16_000, ge=8_000, le=48_000)
    language: str | None = Field(None, max_length=35, pattern=LANGUAGE)
    interim_results: bool = True
    ticket: str | None = Field(None, max_length=100)
    workspace_id: str | None = Field(None, max_length=36)


class SessionTicket(BaseModel):
    ticket: str = Field(description="Opens one session, once, within `expires_in` seconds.")
    expires_in: int
    url: str = Field(description="The session's path with the ticket, for `new WebSocket(...)`.")


class TranscriptionSegment(BaseModel):
    id: int
    start: float
    end: float
    text: str


class Transcription(BaseModel):
    """OpenAI's `json` response, with what this call was charged."""

    text: str
    usage: TranscriptionUsageOut | None = None


class TranscriptionUsageOut(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: int = Field(description="Audio seconds charged (rounded up to a whole second).")
    credits_charged: int
    balance_after: int | None


class VerboseTranscription(BaseModel):
    """OpenAI's `verbose_json` response."""

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment]
    usage: TranscriptionUsageOut | None = None


Transcription.model_rebuild()
