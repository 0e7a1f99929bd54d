from __future__ import annotations

from fastapi import Request, Response
from starlette.responses import StreamingResponse

from lipika.auth.dependencies import CurrentMember, SettingsDep
from lipika.billing.dependencies import BillingDep, MeterDep
from lipika.billing.session import MeteredCall
from lipika.chat import service
from lipika.chat.schemas import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList
from lipika.chat.stream import ChatStream
from lipika.idempotency.dependencies import IdempotencyKeyDep
from lipika.kit import sse
from lipika.kit.routing import api_router
from lipika.ratelimits.dependencies import RateLimitsDep
from lipika.ratelimits.service import Counted

router = api_router(tags=["chat"])

_STREAM_DOC = {
    200: {
        "description": "With `stream: true`: server-sent events, one `chat.completion.chunk` "
        "per `data:` line, a usage chunk when `stream_options.include_usage` is set, then "
        '`data: [DONE]`; a failure mid-stream ends with `data: {"error": {...}}` instead.',
        "content": {
            sse.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ChatCompletionChunk"}}
        },
    }
}


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=_STREAM_DOC)
async def chat_completions(
    body: ChatCompletionRequest,
    me: CurrentMember,
    meter: MeterDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    rate_limits: RateLimitsDep,
    idempotency_key: IdempotencyKeyDep,
) -> ChatCompletion | StreamingResponse:
    """OpenAI-compatible chat completion, metered: 402 if the most it can cost is not available,
    429 past the plan's requests or tokens per minute."""
    prepared = service.prepare(body, meter, request.state.providers)
    counted = await rate_limits.count(me, service.token_allowance(prepared))
    if not body.stream:
        try:
            completion = await service.complete(body, prepared, me, meter, idempotency_key)
        except BaseException:
            await counted.settle(0)
            raise
        await counted.settle(completion.usage.total_tokens)
        response.headers.update(counted.headers())
        return completion
    try:
        call = await meter.open_session(
            me.workspace_id, me.user_id, **service.admission(me, prepared, idempotency_key)
        )
    except BaseException:
        await counted.settle(0)
        raise
    stream = ChatStream(
        prepared,
        call,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        budget=settings.stream_budget_seconds,
    )
    await stream.start(wait=settings.stream_heartbeat_seconds)
    events = sse.EventStream(
        _settling(stream, call, counted), heartbeat=settings.stream_heartbeat_seconds
    )
    events.headers.update(counted.headers())
    return events


def _settling(stream: ChatStream, call: MeteredCall, counted: Counted) -> sse.Producer:
    """The stream, then the rate limits told the tokens it used."""

    async def produce(write: sse.Write) -> None:
        try:
            await stream(write)
        finally:
            used = call.usage()
            await counted.settle(used.input_tokens + used.output_tokens)

    return produce


@router.get("/v1/models", response_model=ModelList)
async def list_models(
    me: CurrentMember, billing: BillingDep, meter: MeterDep, request: Request
) -> ModelList:
    """Every model of the price book, with its provider, limits, prices, and whether this
    server can serve it (`available`) and the caller's plan may use it (`allowed`)."""
    return ModelList(data=await service.model_cards(me, billing, meter, request.state.providers))


@router.get("/v1/models/{model_id}", response_model=ModelCard)
async def get_model(
    model_id: str, me: CurrentMember, billing: BillingDep, meter: MeterDep, request: Request
) -> ModelCard:
    return await service.model_card(model_id, me, billing, meter, request.state.providers)
