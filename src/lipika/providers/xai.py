"""xAI (Grok): the OpenAI Chat Completions wire at https://api.x.ai/v1, with two differences.

xAI's `completion_tokens` leave out the reasoning tokens (total = prompt + completion +
reasoning) while xAI bills them as output, so both are counted. And a wrong key is a 400 whose
flat body says "Incorrect API key provided", not a 401.
"""

from __future__ import annotations

from typing import Any

from lipika.providers.base import ProviderAuthFailed, ProviderError
from lipika.providers.openai import OpenAIProvider


class XAIProvider(OpenAIProvider):
    name = "xai"
    default_base_url = "https://api.x.ai/v1"

    def billed_output_tokens(self, usage: dict[str, Any]) -> int:
        reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
        return usage["completion_tokens"] + reasoning

    def status_error(self, status: int, message: str) -> ProviderError:
        if status == 400 and "api key" in message.lower():
            return ProviderAuthFailed(f"{self.name} answered {status}: {message}")
        return super().status_error(status, message)
