"""File transcription (`POST /v1/audio/transcriptions`, OpenAI's shape): measured, held,
transcribed, charged per audio second.

The file's length is measured by decoding it (kit/audio.py) before anything is held: the hold
is sized from that measurement, so a provider can never be called on credits we do not hold.
The charge is the provider's reported duration, checked against ours: when they disagree by
more than `DURATION_TOLERANCE` the lower is charged (and the difference logged for operators).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass

import structlog

from lipika.auth.dependencies import Principal
from lipika.billing.meter import Meter, Owner, Settlement
from lipika.errors import LipikaError, PayloadTooLarge
from lipika.kit.audio import measure
from lipika.providers.base import ProviderError
from lipika.providers.capabilities import BatchRequest, BatchTranscript
from lipika.providers.speech import TranscriptionRegistry
from lipika.speech.service import speech_model

log = structlog.get_logger()

# Relative and absolute: a provider's duration within 2% or 1 s of ours is taken as it is.
DURATION_TOLERANCE = (0.02, 1.0)


class UpstreamFailed(LipikaError):
    type = "api_error"

    def __init__(self, exc: ProviderError) -> None:
        super().__init__(str(exc) or "the transcription provider failed", code=exc.code)
        self.status_code = exc.status_code


@dataclass(frozen=True, slots=True)
class Transcribed:
    transcript: BatchTranscript
    measured_seconds: float
    charged_seconds: int
    settlement: Settlement


def charged_seconds(reported: float | None, measured: float) -> int:
    """The provider's duration where it gave one and it agrees with ours, else the lower."""
    if reported is None:
        seconds = measured
    else:
        relative, absolute = DURATION_TOLERANCE
        if abs(reported - measured) > max(absolute, relative * measured):
            log.warning("provider duration differs", reported=reported, measured=measured)
            seconds = min(reported, measured)
        else:
            seconds = reported
    return math.ceil(round(seconds, 6))


async def transcribe(
    member: Principal,
    meter: Meter,
    registry: TranscriptionRegistry,
    request: BatchRequest,
    *,
    max_bytes: int,
) -> Transcribed:
    if len(request.audio) > max_bytes:
        raise PayloadTooLarge(
            f"the file is larger than {max_bytes} bytes", param="file", limit_bytes=max_bytes
        )
    price, provider = speech_model(meter.price_book.get, registry.batch, request.model)
    measured = await asyncio.to_thread(measure, request.audio)
    try:
        async with meter.session(
            member.workspace_id,
            member.user_id,
            operation="stt.file",
            price=price.name,
            max_usage={"audio_seconds": math.ceil(measured) + 1},
            owner=Owner("stt.file", uuid.uuid4().hex),
        ) as call:
            transcript = await provider.transcribe(request)
            seconds = charged_seconds(transcript.audio_seconds, measured)
            call.report_units({"audio_seconds": seconds})
            settlement = await call.succeed()
    except ProviderError as exc:
        raise UpstreamFailed(exc) from exc
    return Transcribed(transcript, measured, seconds, settlement)
