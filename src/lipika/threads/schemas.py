from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lipika.kit.schemas import Credits, StepCount, TokenCount
from lipika.threads.models import Visibility

VISIBILITY = (
    "`private`: only its creator sees it; `workspace`: every member of the workspace may read "
    "it (only its creator writes to it)"
)


class ThreadCreate(BaseModel):
    title: str | None = Field(
        None, min_length=1, max_length=200, description="default: from the first message"
    )
    visibility: Visibility = Field(Visibility.PRIVATE, description=VISIBILITY)


class ThreadUpdate(BaseModel):
    """A rename, a change of visibility, or both (the creator only)."""

    title: str | None = Field(None, min_length=1, max_length=200)
    visibility: Visibility | None = Field(None, description=VISIBILITY)

    @model_validator(mode="after")
    def _changes_something(self) -> ThreadUpdate:
        if self.title is None and self.visibility is None:
            raise ValueError("give a title, a visibility or both")
        return self


class ThreadOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    object: Literal["thread"] = "thread"
    title: str
    visibility: Visibility
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    last_model: str | None
    run_in_progress: bool = Field(False, description="a message's run holds the thread right now")


class ThreadPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[ThreadOut]
    has_more: bool
    next_cursor: str | None = Field(description="pass as `cursor` to read the next (older) page")


class MessageIn(BaseModel):
    content: str = Field(min_length=1, max_length=100_000)
    model: str = Field(min_length=1, max_length=100, description="any model the plan allows")
    stream: bool = True
    max_tokens: TokenCount | None = Field(None, description="most output tokens per model step")
    max_steps: StepCount | None = Field(
        None, description="most model and tool steps in this run (the server caps it too)"
    )
    max_credits: Credits | None = Field(
        None, gt=0, description="most credits (not micro-credits) the whole run may spend"
    )


class ToolCallOut(BaseModel):
    id: str
    name: str
    args: dict[str, Any]


class MessageOut(BaseModel):
    id: str
    role: Literal["user", "assistant", "tool", "system"]
    content: str
    created_at: datetime | None = None
    model: str | None = Field(None, description="the model that wrote an assistant message")
    tool_calls: list[ToolCallOut] = Field(default_factory=list)
    tool_call_id: str | None = None
    tool_name: str | None = None
    status: Literal["success", "error"] | None = Field(None, description="of a tool result")
    credits_charged: int | None = Field(None, description="micro-credits this step cost")


class MessagePage(BaseModel):
    object: Literal["list"] = "list"
    data: list[MessageOut] = Field(description="oldest first")
    has_more: bool
    next_before: str | None = Field(description="pass as `before` to read the older messages")


class RunOut(BaseModel):
    """The answer to a message sent with `stream: false`."""

    object: Literal["thread.run"] = "thread.run"
    thread_id: uuid.UUID
    messages: list[MessageOut] = Field(description="what the run added after the user's message")
    unit: Literal["micro_credits"] = "micro_credits"
    credits_charged: int
    balance_after: int | None
    steps: int


# -- run events (documented in the OpenAPI document): one `data:` frame each, told apart by `type`


class TokenEvent(BaseModel):
    type: Literal["token"] = "token"
    text: str


class ToolStartEvent(BaseModel):
    type: Literal["tool_start"] = "tool_start"
    step: int
    call_id: str
    tool: str
    args: dict[str, Any]


class ToolEndEvent(BaseModel):
    type: Literal["tool_end"] = "tool_end"
    step: int
    call_id: str
    tool: str
    status: Literal["success", "error"]
    output: str = Field(description="the tool's output, cut at 2,000 characters")
    credits_charged: int
    balance_after: int | None


class UsageEvent(BaseModel):
    """After every model step."""

    type: Literal["usage"] = "usage"
    step: int
    model: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    credits_charged: int
    balance_after: int | None


class DoneEvent(BaseModel):
    """Terminal: the run finished."""

    type: Literal["done"] = "done"
    credits_charged: int = Field(description="micro-credits the whole run cost")
    balance_after: int | None
    steps: int


class ErrorEvent(BaseModel):
    """Terminal: the run failed; `error` has the API's error shape."""

    type: Literal["error"] = "error"
    error: dict[str, Any]
    credits_charged: int
    balance_after: int | None
    steps: int


ThreadEvent = Annotated[
    TokenEvent | ToolStartEvent | ToolEndEvent | UsageEvent | DoneEvent | ErrorEvent,
    Field(discriminator="type"),
]
