"""A chat completion: admit a hold for the most it can cost, call the model, settle by policy.

The streamed variant lives in `chat/stream.py`; both share `prepare` and `admission`.
Which model serves a request is the one resolver's to say (`billing.catalogue.chat_model`, which
the agent uses too).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

from orjson import dumps

from lipika.apikeys.service import key_limits
from lipika.auth.dependencies import Principal
from lipika.billing.catalogue import chat_model
from lipika.billing.meter import Meter, Owner, Settlement
from lipika.billing.plans import DEFAULT_PLAN, Plan
from lipika.billing.pricebook import Price
from lipika.billing.service import BillingService
from lipika.chat.compat import chat_request
from lipika.chat.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    FunctionCallOut,
    ModelCard,
    PromptTokensDetails,
    ToolCallOut,
)
from lipika.errors import LipikaError, NotFound
from lipika.idempotency.dependencies import scope_of
from lipika.providers.base import (
    ChatProvider,
    ChatRequest,
    ChatResult,
    ProviderError,
    Usage,
)
from lipika.providers.registry import ProviderRegistry


class UpstreamFailed(LipikaError):
    """A provider's failure, answered with its status and code, and its hint of when to try
    again passed on (`Retry-After`, and `retry-after-ms`, which the SDKs read first)."""

    type = "api_error"

    def __init__(self, exc: ProviderError) -> None:
        super().__init__(
            str(exc) or "the model provider failed", code=exc.code, retry_after=exc.retry_after
        )
        self.status_code = exc.status_code

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.retry_after is not None:
            headers["retry-after-ms"] = str(max(0, math.ceil(self.retry_after * 1000)))
        return headers


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated request: the provider that serves it and the most it can use."""

    provider: ChatProvider
    request: ChatRequest
    max_usage: dict[str, int]


def prepare(body: ChatCompletionRequest, meter: Meter, providers: ProviderRegistry) -> Prepared:
    price, provider = chat_model(meter.price_book, providers, body.model)
    limit = price.output_allowance(body.output_limit)
    request = chat_request(body, provider, limit)
    max_usage = {"input_tokens": provider.estimate_input_tokens(request), "output_tokens": limit}
    return Prepared(provider, request, max_usage)


def admission(member: Principal, prepared: Prepared, idempotency_key: str | None) -> dict:
    """The keyword arguments of `Meter.admit`/`Meter.hold` for this completion."""
    return {
        "operation": "chat.completion",
        "price": prepared.request.model,
        "max_usage": prepared.max_usage,
        "owner": Owner("chat.request", uuid.uuid4().hex),
        "api_key": key_limits(member),
        # Scoped as the replay store scopes the key (the workspace and the key or the user):
        # one caller's key never refuses another's completion.
        "idempotency_key": f"chat:{scope_of(member)}:{idempotency_key}"
        if idempotency_key
        else None,
    }


def token_allowance(prepared: Prepared) -> int:
    """The most tokens a completion may use: what rate limits count at admission."""
    return prepared.max_usage["input_tokens"] + prepared.max_usage["output_tokens"]


async def complete(
    body: ChatCompletionRequest,
    prepared: Prepared,
    member: Principal,
    meter: Meter,
    idempotency_key: str | None,
) -> ChatCompletion:
    try:
        async with meter.session(
            member.workspace_id, member.user_id, **admission(member, prepared, idempotency_key)
        ) as call:
            result = await prepared.provider.complete(prepared.request)
            call.report(result.usage)
            call.deliver(result.text)
            call.deliver_tool_calls(result.tool_calls)
            settlement = await call.succeed()
            usage = call.usage()
    except ProviderError as exc:
        raise UpstreamFailed(exc) from exc
    return ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model,
        choices=[
            Choice(
                message=assistant_message(result),
                finish_reason=result.finish_reason,
                logprobs=result.logprobs,
            )
        ],
        usage=completion_usage(usage, settlement),
    )


def assistant_message(result: ChatResult) -> AssistantMessage:
    """OpenAI's message: with tool calls, content is null unless the model also wrote text."""
    if not result.tool_calls:
        return AssistantMessage(content=result.text)
    calls = [
        ToolCallOut(
            id=c.id,
            function=FunctionCallOut(name=c.name, arguments=dumps(c.arguments).decode()),
        )
        for c in result.tool_calls
    ]
    return AssistantMessage(content=result.text or None, tool_calls=calls)


def completion_usage(usage: Usage, settlement: Settlement) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_input_tokens),
        credits_charged=settlement.charged,
        balance_after=settlement.balance_after,
    )


async def model_cards(
    member: Principal, billing: BillingService, meter: Meter, providers: ProviderRegistry
) -> list[ModelCard]:
    plan = await _plan_of(member, billing, meter)
    return [_card(price, plan, providers) for price in meter.price_book.models]


async def model_card(
    model_id: str,
    member: Principal,
    billing: BillingService,
    meter: Meter,
    providers: ProviderRegistry,
) -> ModelCard:
    price = meter.price_book.get(model_id)
    if price is None or price.kind != "model":
        raise NotFound(f"model {model_id!r} does not exist", code="model_not_found")
    return _card(price, await _plan_of(member, billing, meter), providers)


async def _plan_of(member: Principal, billing: BillingService, meter: Meter) -> Plan | None:
    wallet = await billing.wallet(member.workspace_id)
    return meter.plans.get(wallet.plan) or meter.plans.get(DEFAULT_PLAN)


def _card(price: Price, plan: Plan | None, providers: ProviderRegistry) -> ModelCard:
    provider = providers.get(price.provider or "")
    return ModelCard(
        id=price.name,
        owned_by=price.provider or "",
        label=price.label,
        context_window=price.context_window or 0,
        max_output_tokens=price.max_output_tokens or 0,
        prices=dict(price.rates),
        available=provider is not None and provider.available,
        allowed=plan is not None and plan.allows(price.name),
    )
