"""OpenAI's chat completion request and response shapes (the subset we serve)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lipika.kit.schemas import TokenCount


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str = Field(min_length=1, max_length=20_000_000)
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(BaseModel):
    """A part of a message's content: text, or (in a user message) an image by http(s) URL or
    `data:` URL. Other kinds (audio, files) are refused with `unsupported_parameter`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=40)
    text: str | None = None
    image_url: ImageURL | None = None


class FunctionCallIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=1_000_000, description="the arguments as JSON text")


class ToolCallIn(BaseModel):
    """A call an assistant message made (sent back with the conversation)."""

    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=200)
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=128)
    tool_call_id: str | None = Field(None, max_length=200)

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(BaseModel):
    include_usage: bool = False


class FunctionDefinition(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = Field(None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(BaseModel):
    name: str = Field("response", min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(populate_by_name=True)


class ResponseFormatIn(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormatIn:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("a json_schema response format needs its json_schema")
        return self


class ChatCompletionRequest(BaseModel):
    # Fields beyond these are answered as chat/compat.py says: OpenAI's metadata fields are
    # ignored, its other fields and unknown ones refused with a 400 naming the field.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=100)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=2000)
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = Field(None)
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormatIn | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not s or len(s) > 1000 for s in stops):
            raise ValueError("at most 4 stop sequences, each 1 to 1000 characters")
        return value

    @model_validator(mode="after")
    def _one_limit(self) -> ChatCompletionRequest:
        if (
            self.max_tokens
            and self.max_completion_tokens
            and self.max_tokens != self.max_completion_tokens
        ):
            raise ValueError("max_tokens and max_completion_tokens disagree; send one")
        return self

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class FunctionCallOut(BaseModel):
    name: str
    arguments: str = Field(description="the arguments as JSON text")


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: Any = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    credits_charged: int = Field(description="micro-credits charged for this completion")
    balance_after: int | None = Field(
        description="the workspace balance after the charge, micro-credits"
    )


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class ModelCard(BaseModel):
    """OpenAI's model object, with what a buyer of credits needs to choose one."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    label: str
    context_window: int
    max_output_tokens: int
    prices: dict[str, int] = Field(
        description="micro-credits per million tokens, by unit (input, cached input, output)"
    )
    available: bool = Field(description="this server has the provider configured")
    allowed: bool = Field(description="the caller's plan includes the model")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- stream frames (documented in the OpenAPI document; the relay builds them as bytes) -------


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str = Field(description="the next fragment of the arguments' JSON text")


class ToolCallDelta(BaseModel):
    """A piece of a tool call: its first carries `id`, `type` and the function's `name`."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    logprobs: Any = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` frame of a streamed completion. The last chunk, with
    `stream_options.include_usage`, has empty `choices` and the `usage`; the stream then ends
    with `data: [DONE]`, or, after a failure mid-stream, with a `data:` frame holding an
    `ErrorResponse` instead."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
