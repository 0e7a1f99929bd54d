"""Starts a video job and returns its id at once; when the job ends, the thread's history gets
a message saying so (and the job's own event stream says it first).

The tool call is metered in its node at the tool's per-call price; the video by its job's own
hold, which outlives the run (a video takes minutes).
"""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import StructuredTool
from langgraph.prebuilt import ToolRuntime
from pydantic import BaseModel, Field

from lipika.agent.tools.base import AgentTool, ToolInputError
from lipika.errors import LipikaError


class GenerateVideoInput(BaseModel):
    prompt: str = Field(min_length=1, max_length=4000, description="What the video shows.")
    seconds: int = Field(8, ge=1, le=60, description="Length in seconds.")
    model: str = Field("demo", max_length=100, description="A video model of the price book.")
    resolution: Literal["480p", "720p", "1080p", "4k"] = "720p"


async def generate_video(
    prompt: str,
    runtime: ToolRuntime,
    seconds: int = 8,
    model: str = "demo",
    resolution: str = "720p",
) -> str:
    ctx = runtime.context
    if ctx.jobs is None:
        raise ToolInputError("video generation is not available on this server")
    params = {"prompt": prompt, "seconds": seconds, "model": model, "resolution": resolution}
    try:
        job = await ctx.jobs.start_video(
            ctx.workspace_id, ctx.user_id, params, thread_id=ctx.thread_id
        )
    except LipikaError as exc:
        raise ToolInputError(exc.message) from None
    return (
        f"video job {job.id} started; it takes a few minutes. Follow /v1/jobs/{job.id}/events; "
        "the thread will say when it is ready."
    )


TOOL = AgentTool(
    StructuredTool.from_function(
        coroutine=generate_video,
        name="generate_video",
        description="Starts generating a video from a prompt; returns the job id at once.",
        args_schema=GenerateVideoInput,
    ),
    price="agent.generate_video",
)
