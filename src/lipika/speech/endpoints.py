from __future__ import annotations

from typing import Annotated, Literal

from fastapi import File, Form, Request, UploadFile, WebSocket
from fastapi.responses import PlainTextResponse

from lipika.auth.dependencies import CurrentMember, SettingsDep
from lipika.billing.dependencies import MeterDep
from lipika.kit.routing import api_router
from lipika.providers.capabilities import BatchRequest
from lipika.speech import batch, formats, service
from lipika.speech.schemas import (
    LANGUAGE,
    SessionTicket,
    Transcription,
    TranscriptionSegment,
    TranscriptionUsageOut,
    VerboseTranscription,
)

router = api_router(tags=["speech"])

LIVE_PATH = "/v1/audio/transcriptions/live"
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
UPLOAD_FORM_OVERHEAD = 64 * 1024  # the form's other fields and boundaries, beside the file


@router.post("/v1/audio/transcriptions/sessions", response_model=SessionTicket, status_code=201)
async def create_session_ticket(
    me: CurrentMember, settings: SettingsDep, request: Request
) -> SessionTicket:
    """A single-use ticket that opens one live session (for browsers, which cannot set headers
    on a WebSocket): connect to `url` within `expires_in` seconds."""
    ticket = await request.state.stt_tickets.issue(me)
    return SessionTicket(
        ticket=ticket,
        expires_in=settings.stt_ticket_ttl_seconds,
        url=f"{LIVE_PATH}?ticket={ticket}",
    )


@router.websocket(LIVE_PATH)
async def live_transcription(socket: WebSocket) -> None:
    """Real-time transcription; see the README's Speech-to-text section for the protocol."""
    await service.serve_live(socket)


_FORMATS_DOC = {
    200: {
        "description": "`json` (the default) and `verbose_json` as JSON; `text`, `srt` and "
        "`vtt` as plain text.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.post(
    TRANSCRIPTIONS_PATH,
    response_model=Transcription | VerboseTranscription,
    responses=_FORMATS_DOC,
)
async def create_transcription(
    me: CurrentMember,
    meter: MeterDep,
    settings: SettingsDep,
    request: Request,
    file: Annotated[
        UploadFile, File(description="The audio file (WAV, MP3, WebM, OGG, FLAC, M4A...).")
    ],
    model: Annotated[str, Form(max_length=100, pattern=r"^[\w.:-]+$")],
    language: Annotated[str | None, Form(max_length=35, pattern=LANGUAGE)] = None,
    prompt: Annotated[str | None, Form(max_length=4000)] = None,
    response_format: Annotated[
        Literal["json", "text", "srt", "verbose_json", "vtt"], Form()
    ] = "json",
    temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
) -> Transcription | VerboseTranscription | PlainTextResponse:
    """OpenAI-compatible file transcription, charged per audio second: 413 over the size
    limit, 400 for a file that is not audio, 402 when its length cannot be held."""
    audio = await file.read(settings.stt_max_upload_bytes + 1)
    done = await batch.transcribe(
        me,
        meter,
        request.state.transcribers,
        BatchRequest(
            model=model,
            audio=audio,
            filename=file.filename or "audio",
            language=language,
            prompt=prompt,
        ),
        max_bytes=settings.stt_max_upload_bytes,
    )
    transcript = done.transcript
    duration = transcript.audio_seconds or done.measured_seconds
    segments = formats.segments_of(transcript, duration)
    usage = TranscriptionUsageOut(
        seconds=done.charged_seconds,
        credits_charged=done.settlement.charged,
        balance_after=done.settlement.balance_after,
    )
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format == "srt":
        return PlainTextResponse(formats.srt(segments))
    if response_format == "vtt":
        return PlainTextResponse(formats.vtt(segments), media_type="text/vtt")
    if response_format == "verbose_json":
        return VerboseTranscription(
            language=transcript.language or language or "en",
            duration=round(duration, 3),
            text=transcript.text,
            segments=[
                TranscriptionSegment(id=i, start=s.start, end=s.end, text=s.text)
                for i, s in enumerate(segments)
            ],
            usage=usage,
        )
    return Transcription(text=transcript.text, usage=usage)
