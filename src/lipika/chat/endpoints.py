from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from lipika.auth.dependencies import CurrentMember
from lipika.billing.dependencies import MeterDep
from lipika.chat import service
from lipika.chat.schemas import ChatCompletion, ChatCompletionRequest

router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(
    body: ChatCompletionRequest,
    me: CurrentMember,
    meter: MeterDep,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ChatCompletion:
    """OpenAI-compatible chat completion, metered: 402 if the most it can cost is not available."""
    return await service.complete(body, me, meter, request.state.providers, idempotency_key)
