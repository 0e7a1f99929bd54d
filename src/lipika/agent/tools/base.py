"""What a tool module provides: a LangChain tool, the price it is metered at, and its usage."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

ONE_CALL: Mapping[str, int] = {"calls": 1}


class ToolInputError(ValueError):
    """The model gave the tool an input it cannot use. The model is told (it may try again);
    the call is not charged. Any other exception from a tool fails the run."""


@dataclass(frozen=True, slots=True)
class AgentTool:
    """One tool: `price` names its entry in the price book; a call holds `max_usage` and is
    charged `usage(result)`, in that price's units."""

    tool: BaseTool
    price: str
    max_usage: Mapping[str, int] = field(default_factory=lambda: ONE_CALL)
    usage: Callable[[ToolMessage], Mapping[str, int]] = lambda _: ONE_CALL

    @property
    def name(self) -> str:
        return self.tool.name


@dataclass(frozen=True, slots=True)
class JobRef:
    """A job a tool started: its id, and (once it ended) how it ended."""

    id: uuid.UUID
    status: str
    outputs: int = 0
    error: str | None = None


class JobTools(Protocol):
    """What the media tools need of the jobs domain (given to the agent at start-up): each
    job is metered by its own hold, as any job is."""

    async def run_image(
        self,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        params: Mapping[str, Any],
        *,
        thread_id: uuid.UUID | None,
    ) -> JobRef:
        """Runs an image job and waits for its end."""

    async def start_video(
        self,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        params: Mapping[str, Any],
        *,
        thread_id: uuid.UUID | None,
    ) -> JobRef:
        """Submits a video job and returns at once."""
