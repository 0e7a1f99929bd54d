"""What a tool module provides: a LangChain tool, the price it is metered at, and its usage."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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
