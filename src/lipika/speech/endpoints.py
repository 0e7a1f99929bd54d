from __future__ import annotations

from fastapi import Request, WebSocket

from lipika.auth.dependencies import CurrentMember, SettingsDep
from lipika.kit.routing import api_router
from lipika.speech import service
from lipika.speech.schemas import SessionTicket

router = api_router(tags=["speech"])

LIVE_PATH = "/v1/audio/transcriptions/live"


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
