"""A chat completion: admit a hold for the most it can cost, call the model, settle by policy."""

from __future__ import annotations

import time
import uuid

from lipika.auth.dependencies import Principal
from lipika.billing.meter import Meter
from lipika.billing.policy import Outcome
from lipika.chat.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    PromptTokensDetails,
)
from lipika.errors import BadRequest, LipikaError, NotFound
from lipika.providers.base import ChatRequest, Message, ProviderError
from lipika.providers.registry import ProviderRegistry


class ModelUnavailable(LipikaError):
    status_code = 503
    code = "model_unavailable"
    type = "api_error"


class UpstreamFailed(LipikaError):
    type = "api_error"

    def __init__(self, exc: ProviderError) -> None:
        super().__init__(str(exc) or "the model provider failed", code=exc.code)
        self.status_code = exc.status_code
        self.outcome = exc.outcome  # the meter releases the hold under the provider's outcome


async def complete(
    body: ChatCompletionRequest,
    member: Principal,
    meter: Meter,
    providers: ProviderRegistry,
    idempotency_key: str | None,
) -> ChatCompletion:
    if body.stream:
        raise BadRequest(
            "streaming is not served yet; send stream=false", code="stream_unsupported"
        )
    price = meter.price_book.get(body.model)
    if price is None or price.kind != "model":
        raise NotFound(f"model {body.model!r} does not exist", code="model_not_found")
    provider = providers.get(price.provider or "")
    if provider is None or not provider.available:
        raise ModelUnavailable(f"model {body.model!r} is not available on this server")
    limit = min(body.output_limit or price.max_output_tokens, price.max_output_tokens)
    request = ChatRequest(
        model=body.model,
        messages=[Message(_role(m.role), m.text()) for m in body.messages],
        max_output_tokens=limit,
        temperature=body.temperature,
    )
    max_usage = {"input_tokens": provider.estimate_input_tokens(request), "output_tokens": limit}
    key = f"chat:{member.workspace_id}:{idempotency_key}" if idempotency_key else None
    async with meter.hold(
        member.workspace_id,
        member.user_id,
        operation="chat.completion",
        price=body.model,
        max_usage=max_usage,
        idempotency_key=key,
    ) as held:
        try:
            result = await provider.complete(request)
        except ProviderError as exc:
            raise UpstreamFailed(exc) from exc
        settlement = await held.settle(Outcome.SUCCESS, usage=result.usage.units())
    usage = result.usage
    return ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model,
        choices=[
            Choice(
                message=AssistantMessage(content=result.text), finish_reason=result.finish_reason
            )
        ],
        usage=CompletionUsage(
            prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            total_tokens=usage.input_tokens + usage.output_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_input_tokens),
            credits_charged=settlement.charged,
            balance_after=settlement.balance_after,
        ),
    )


def _role(role: str) -> str:
    return "system" if role == "developer" else role
