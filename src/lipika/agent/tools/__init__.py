"""The agent's tools: one module each, and one line here to offer it."""

from __future__ import annotations

from lipika.agent.tools import calculator, clock, generate_image, generate_video
from lipika.agent.tools.base import AgentTool, JobRef, JobTools, ToolInputError

TOOLS: tuple[AgentTool, ...] = (calculator.TOOL, clock.TOOL)
# Offered when the server runs jobs (the agent is given the jobs domain at start-up).
JOB_TOOLS: tuple[AgentTool, ...] = (generate_image.TOOL, generate_video.TOOL)

__all__ = ["JOB_TOOLS", "TOOLS", "AgentTool", "JobRef", "JobTools", "ToolInputError"]
