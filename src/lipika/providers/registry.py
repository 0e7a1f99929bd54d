"""Which adapter serves which provider name of the price book. One line per provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from lipika.config import Settings
from lipika.providers.anthropic import AnthropicProvider
from lipika.providers.base import ChatProvider
from lipika.providers.capabilities import ImageProvider, VideoProvider
from lipika.providers.demo import DemoProvider
from lipika.providers.demo_media import DemoImageProvider, DemoVideoProvider
from lipika.providers.gemini import GeminiProvider
from lipika.providers.gemini_images import GeminiImageProvider
from lipika.providers.openai import OpenAIProvider
from lipika.providers.openai_images import OpenAIImageProvider, XAIImageProvider
from lipika.providers.research import DemoResearch, ResearchProvider
from lipika.providers.valyu import ValyuResearch
from lipika.providers.veo import VeoProvider
from lipika.providers.xai import XAIProvider
from lipika.providers.xai_video import XAIVideoProvider


@dataclass
class ProviderRegistry:
    providers: Mapping[str, ChatProvider]

    def get(self, name: str) -> ChatProvider | None:
        return self.providers.get(name)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()


def build_registry(settings: Settings) -> ProviderRegistry:
    return ProviderRegistry(
        {
            "demo": DemoProvider(),
            "anthropic": AnthropicProvider(**_connection(settings, "anthropic")),
            "openai": OpenAIProvider(**_connection(settings, "openai")),
            "gemini": GeminiProvider(**_connection(settings, "gemini")),
            "xai": XAIProvider(**_connection(settings, "xai")),
        }
    )


@dataclass
class MediaProviders:
    """The image and video adapters by provider name: the demo always, the others when their
    key is configured."""

    image: dict[str, ImageProvider]
    video: dict[str, VideoProvider]
    research: dict[str, ResearchProvider] = field(default_factory=dict)

    async def aclose(self) -> None:
        for provider in {*self.image.values(), *self.video.values(), *self.research.values()}:
            await provider.aclose()


def build_media(settings: Settings) -> MediaProviders:
    work = settings.demo_job_seconds
    media = MediaProviders(
        image={"demo": DemoImageProvider(work / 4)},
        video={"demo": DemoVideoProvider(work)},
        research={"demo": DemoResearch(settings.demo_research_step_seconds)},
    )
    timeout = settings.provider_timeout_seconds
    if settings.gemini_api_key is not None:
        key = settings.gemini_api_key.get_secret_value()
        media.video["gemini"] = VeoProvider(key, settings.gemini_base_url, timeout=timeout)
        media.image["gemini"] = GeminiImageProvider(
            key,
            settings.gemini_base_url,
            timeout=timeout,
            max_retries=settings.provider_max_retries,
        )
    if settings.openai_api_key is not None:
        key = settings.openai_api_key.get_secret_value()
        media.image["openai"] = OpenAIImageProvider(
            key,
            settings.openai_base_url,
            timeout=timeout,
            max_retries=settings.provider_max_retries,
        )
    if settings.valyu_api_key is not None:
        media.research["valyu"] = ValyuResearch(
            settings.valyu_api_key.get_secret_value(),
            settings.valyu_base_url,
            timeout_seconds=min(timeout, 60.0),
        )
    if settings.xai_api_key is not None:
        key = settings.xai_api_key.get_secret_value()
        media.image["xai"] = XAIImageProvider(
            key, settings.xai_base_url, timeout=timeout, max_retries=settings.provider_max_retries
        )
        media.video["xai"] = XAIVideoProvider(key, settings.xai_base_url, timeout=timeout)
    return media


def _connection(settings: Settings, name: str) -> dict[str, Any]:
    """The constructor arguments of a provider adapter, from `settings.{name}_*`."""
    key: SecretStr | None = getattr(settings, f"{name}_api_key")
    return {
        "api_key": key.get_secret_value() if key else None,
        "base_url": getattr(settings, f"{name}_base_url"),
        "timeout": settings.provider_timeout_seconds,
        "max_retries": settings.provider_max_retries,
    }
