"""Which adapter serves which transcription provider of the price book (`stt.*` entries name
theirs). One line per provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr

from lipika.config import Settings
from lipika.providers.capabilities import BatchTranscriptionProvider, TranscriptionProvider
from lipika.providers.deepgram import DeepgramProvider
from lipika.providers.demo_speech import DemoTranscriptionProvider
from lipika.providers.openai_speech import OpenAISpeechProvider


@dataclass
class TranscriptionRegistry:
    live: Mapping[str, TranscriptionProvider] = field(default_factory=dict)
    batch: Mapping[str, BatchTranscriptionProvider] = field(default_factory=dict)

    async def aclose(self) -> None:
        for provider in {*self.live.values(), *self.batch.values()}:
            await provider.aclose()


def build_transcription_registry(settings: Settings) -> TranscriptionRegistry:
    demo = DemoTranscriptionProvider()
    openai = OpenAISpeechProvider(
        _secret(settings.openai_api_key),
        settings.openai_base_url,
        settings.provider_timeout_seconds,
        settings.provider_max_retries,
    )
    live: dict[str, TranscriptionProvider] = {
        "demo": demo,
        "deepgram": DeepgramProvider(
            _secret(settings.deepgram_api_key),
            settings.deepgram_base_url,
            settings.provider_timeout_seconds,
        ),
        "openai": openai,
    }
    batch: dict[str, BatchTranscriptionProvider] = {"demo": demo, "openai": openai}
    return TranscriptionRegistry(live, batch)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None
