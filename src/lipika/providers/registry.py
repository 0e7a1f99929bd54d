"""Which adapter serves which provider name of the price book. One line per provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lipika.config import Settings
from lipika.providers.base import ChatProvider
from lipika.providers.demo import DemoProvider


@dataclass
class ProviderRegistry:
    providers: Mapping[str, ChatProvider]

    def get(self, name: str) -> ChatProvider | None:
        return self.providers.get(name)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()


def build_registry(settings: Settings) -> ProviderRegistry:
    return ProviderRegistry({"demo": DemoProvider()})
