"""The agent's chat models: LangChain models built from the same settings as the chat providers.

One line per provider name of the price book. Each entry says how to build the model, which
setting holds its key (no key: the model is listed but refused), and which call argument
limits the output (the hold is sized by it, so every call passes it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import ChatOpenAI
from langchain_xai import ChatXAI
from pydantic import SecretStr

from lipika.agent.demo import DemoChatModel
from lipika.billing.pricebook import Price
from lipika.config import Settings


@dataclass(frozen=True, slots=True)
class ModelProvider:
    build: Callable[[Settings, Price], BaseChatModel]
    key: Callable[[Settings], SecretStr | None] = lambda _: SecretStr("local")
    output_limit_arg: str = "max_tokens"

    def available(self, settings: Settings) -> bool:
        return self.key(settings) is not None


def _demo(settings: Settings, price: Price) -> BaseChatModel:
    return DemoChatModel(max_tokens=price.max_output_tokens or 4096)


# stream_usage=True: with a custom base URL ChatOpenAI would otherwise not ask for usage in a
# stream, and report none. use_responses_api=False: the Chat Completions wire, always.
def _openai(settings: Settings, price: Price) -> BaseChatModel:
    return ChatOpenAI(
        model=price.name,
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        stream_usage=True,
        use_responses_api=False,
        **_common(settings),
    )


def _anthropic(settings: Settings, price: Price) -> BaseChatModel:
    return ChatAnthropic(  # usage comes on the message_delta chunk (stream_usage is the default)
        model=price.name,
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url,
        **_common(settings),
    )


def _gemini(settings: Settings, price: Price) -> BaseChatModel:
    return ChatGoogleGenerativeAI(  # usage comes as differences on every chunk
        model=price.name,
        api_key=settings.gemini_api_key,
        base_url=settings.gemini_base_url,
        **_common(settings),
    )


def _xai(settings: Settings, price: Price) -> BaseChatModel:
    return ChatXAI(
        model=price.name,
        api_key=settings.xai_api_key,
        base_url=settings.xai_base_url or "https://api.x.ai/v1/",
        stream_usage=True,
        use_responses_api=False,
        **_common(settings),
    )


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "timeout": settings.provider_timeout_seconds,
        "max_retries": settings.provider_max_retries,
    }


PROVIDERS: Mapping[str, ModelProvider] = {
    "demo": ModelProvider(_demo),
    "openai": ModelProvider(_openai, key=lambda s: s.openai_api_key),
    "anthropic": ModelProvider(_anthropic, key=lambda s: s.anthropic_api_key),
    "gemini": ModelProvider(
        _gemini, key=lambda s: s.gemini_api_key, output_limit_arg="max_output_tokens"
    ),
    "xai": ModelProvider(_xai, key=lambda s: s.xai_api_key),
}
