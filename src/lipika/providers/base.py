"""The provider interfaces, by capability, and the errors every adapter maps its own to.

Providers report facts (which failure, the usage so far); they know nothing of credits. Which
charge-policy outcome a failure is, is billing's to say (`billing.session.outcome_of`).

    providers/errors.py        ProviderError and its kinds, the HTTP status map
    providers/chat.py          the chat capability (requests, stream events, ChatProvider)
    providers/capabilities.py  image, video, research and transcription (interfaces only)

This module re-exports the chat capability and the errors, the names every adapter imports.
"""

from lipika.providers.chat import (
    ChatProvider,
    ChatRequest,
    ChatResult,
    ClientT,
    Finish,
    FinishReason,
    Message,
    SDKClientProvider,
    StreamEvent,
    Tool,
    ToolCall,
    Usage,
    parse_arguments,
    turns,
)
from lipika.providers.errors import (
    STATUS_ERRORS,
    ProviderAuthFailed,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
)

__all__ = [
    "STATUS_ERRORS",
    "ChatProvider",
    "ChatRequest",
    "ChatResult",
    "ClientT",
    "Finish",
    "FinishReason",
    "Message",
    "ProviderAuthFailed",
    "ProviderError",
    "ProviderOverloaded",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderTimeout",
    "SDKClientProvider",
    "StreamEvent",
    "Tool",
    "ToolCall",
    "Usage",
    "parse_arguments",
    "turns",
]
