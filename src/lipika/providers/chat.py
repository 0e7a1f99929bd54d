"""The chat capability: what a chat provider is asked (`ChatRequest`), what it reports (text
deltas, `Usage`, `Finish`), and the interface every chat adapter implements."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from orjson import JSONDecodeError, dumps, loads

from lipika.providers.errors import ProviderAuthFailed, ProviderError


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the model may call: its arguments are a JSON object of the `parameters` schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for. `id` is the provider's (Gemini sends none: the adapter
    makes one); the tool message that answers it carries the same id."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Image:
    """An image a user sent: an http(s) URL, or a `data:` URL with the bytes in base64."""

    url: str

    @property
    def is_data(self) -> bool:
        return self.url.startswith("data:")

    def data(self) -> tuple[str, str]:
        """The media type and the base64 text of a `data:` URL (already checked by the API)."""
        head, _, payload = self.url.partition(",")
        return head.removeprefix("data:").split(";")[0], payload


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls
    tool_call_id: str | None = None  # a tool message: the call it answers (None: plain text)
    name: str | None = None  # a tool message: the tool's name (Gemini answers calls by name)
    images: tuple[Image, ...] = ()  # a user's images, after its text


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model may call tools: "auto", "none", "required" (some tool), or "tool"
    (the one named)."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The answer as JSON: any JSON object ("json_object"), or one of a schema ("json_schema")."""

    type: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str = "response"
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    max_output_tokens: int
    temperature: float | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


# What a chat request may ask beyond plain text, by the name a provider declares it under
# (`ChatProvider.features`). The API refuses, naming the parameter and the provider, a request
# that asks a provider for a feature it does not declare, rather than dropping it.
FEATURES: dict[str, str] = {
    "tools": "function tools (`tools`)",
    "tool_choice": "`tool_choice`",
    "parallel_tool_calls": "turning parallel tool calls off (`parallel_tool_calls: false`)",
    "stop": "stop sequences (`stop`)",
    "temperature": "`temperature`",
    "top_p": "`top_p`",
    "seed": "`seed`",
    "json_object": "JSON mode (`response_format: json_object`)",
    "json_schema": "structured output (`response_format: json_schema`)",
    "logprobs": "log probabilities (`logprobs`, `top_logprobs`), streamed or not",
    "image_data": "images as data URLs",
    "image_url": "images by http(s) URL",
}


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def units(self) -> dict[str, int]:
        """In the price book's units. Cached tokens are billed at the cached rate, not twice."""
        return {
            "input_tokens": self.input_tokens - self.cached_input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
        }


FinishReason: TypeAlias = Literal["stop", "length", "content_filter", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    usage: Usage
    finish_reason: FinishReason = "stop"
    provider_request_id: str | None = field(default=None)
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: dict[str, Any] | None = None  # OpenAI's choice `logprobs`, when asked for


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    tool_calls: tuple[ToolCall, ...] = ()  # whole, once their arguments have all arrived


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: the first of call `index` (0, 1, ... in the
    order the model made them) carries its id and name, every one a fragment of the
    arguments' JSON text. The `Finish` repeats each call whole."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class TextWithLogprobs:
    """A text delta with its log probabilities (OpenAI's chunk `logprobs`), in place of the
    plain str when the request asked for them: plain text pays nothing for the feature."""

    text: str
    logprobs: dict[str, Any] | None


# What `ChatProvider.stream` yields: a text delta (str, or `TextWithLogprobs` when asked for)
# as it arrives; a `ToolCallDelta` as a tool call streams; a `Usage` whenever the provider
# reports one (cumulative: the latest replaces earlier ones); one `Finish` at the end, with the
# tool calls the model asked for.
StreamEvent: TypeAlias = str | TextWithLogprobs | Usage | ToolCallDelta | Finish


# An upper estimate of the input tokens of one image, for the hold: the providers count a large
# image at about 1,100 (OpenAI, high detail), 1,600 (Anthropic) and 260 (Gemini) tokens.
IMAGE_TOKENS = 1600


class ChatProvider(abc.ABC):
    """One module per provider implements this; the registry maps provider names to instances."""

    name: str
    features: frozenset[str] = frozenset()  # keys of FEATURES this adapter honours

    @property
    def available(self) -> bool:
        """False when the provider is not configured (no API key): listed, but refused."""
        return True

    def estimate_input_tokens(self, request: ChatRequest) -> int:
        """An upper estimate of the input tokens, for the hold placed before the call.

        No tokenizer is cheap and exact for every provider; English runs near four characters a
        token, so half the characters plus a per-message overhead stays above the real count for
        ordinary text. Tool calls count their arguments' JSON, tools their schemas. Usage
        above the hold is charged the hold, no more (recorded as overage).
        """
        chars = sum(len(m.content) for m in request.messages)
        chars += sum(
            len(call.name) + len(dumps(call.arguments))
            for m in request.messages
            for call in m.tool_calls
        )
        chars += sum(
            len(t.name) + len(t.description) + len(dumps(t.parameters)) for t in request.tools
        )
        if request.response_format and request.response_format.schema:
            chars += len(dumps(request.response_format.schema))
        images = sum(len(m.images) for m in request.messages)
        return chars // 2 + 8 * (len(request.messages) + 1) + IMAGE_TOKENS * images

    @abc.abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResult:
        """One non-streamed completion. Raises a `ProviderError` subclass on failure."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Streams a completion as `StreamEvent`s. Raises a `ProviderError` subclass on failure,
        before or during the stream. Closing the iterator early (or cancelling the task reading
        it) closes the upstream response, which is how a client disconnect cancels the call."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Releases clients the provider holds."""

    def tool_call(self, call_id: str, name: str, arguments: str) -> ToolCall:
        """A call whose arguments arrived as JSON text (whole, or joined from stream pieces)."""
        return ToolCall(call_id, name, parse_arguments(self.name, name, arguments))


ClientT = TypeVar("ClientT")


class SDKClientProvider(ChatProvider, Generic[ClientT]):
    """A provider whose SDK client exists only when a key is configured; without one it is
    listed but unavailable, and a call is refused before anything is sent."""

    def __init__(self, client: ClientT | None) -> None:
        self._client = client

    @property
    def available(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> ClientT:
        if self._client is None:
            raise ProviderAuthFailed(f"{self.name}: no API key is configured")
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()  # type: ignore[attr-defined]


def parse_arguments(provider: str, name: str, text: str) -> dict[str, Any]:
    """A tool call's arguments from the JSON text the model wrote (empty: no arguments)."""
    try:
        arguments = loads(text) if text else {}
    except JSONDecodeError as exc:
        raise ProviderError(f"{provider}: malformed arguments for the {name} tool: {exc}") from exc
    if not isinstance(arguments, dict):
        raise ProviderError(f"{provider}: the {name} tool's arguments are not a JSON object")
    return arguments


def turns(messages: Sequence[Message]) -> Iterator[Message | tuple[Message, ...]]:
    """The conversation without its system messages, for the APIs that take the answers to
    tool calls in one user turn (Anthropic, Gemini): consecutive answers (tool messages with
    the id of the call they answer) come as one tuple."""
    answers: list[Message] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool" and m.tool_call_id is not None:
            answers.append(m)
            continue
        if answers:
            yield tuple(answers)
            answers = []
        yield m
    if answers:
        yield tuple(answers)
