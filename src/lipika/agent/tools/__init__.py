"""The agent's tools: one module each, and one line here to offer it."""

from __future__ import annotations

from lipika.agent.tools import calculator, clock
from lipika.agent.tools.base import AgentTool, ToolInputError

TOOLS: tuple[AgentTool, ...] = (calculator.TOOL, clock.TOOL)

__all__ = ["TOOLS", "AgentTool", "ToolInputError"]
