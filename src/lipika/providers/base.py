"""The provider interfaces, by capability, and the errors every adapter maps its own to.

Providers report facts (which failure, the usage so far); they know nothing of credits. Which
charge-policy outcome a failure is, is billing's to say (`billing.session.outcome_of`).

    providers/errors.py        ProviderError and its kinds, the HTTP status map
    providers/chat.py          the chat capability (requests, stream events, ChatProvider)
    providers/capabilities.py  image, video, research and transcription (interfaces only)

This module re-exports the chat capability and the errors, the names every adapter imports.
"""

from lipika.providers.chat import (
    FEATURES,
    ChatProvider,
    ChatRequest,
    ChatResult,
    ClientT,
    Finish,
    FinishReason,
    Image,
    Message,
    ResponseFormat,
    SDKClientProvider,
    StreamEvent,
    TextWithLogprobs,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
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
    retry_hint,
)

__all__ = [
    "FEATURES",
    "STATUS_ERRORS",
    "ChatProvider",
    "ChatRequest",
    "ChatResult",
    "ClientT",
    "Finish",
    "FinishReason",
    "Image",
    "Message",
    "ProviderAuthFailed",
    "ProviderError",
    "ProviderOverloaded",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderTimeout",
    "ResponseFormat",
    "SDKClientProvider",
    "StreamEvent",
    "TextWithLogprobs",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
    "parse_arguments",
    "retry_hint",
    "turns",
]
