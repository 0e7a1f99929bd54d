"""Generates an image as an image job and waits for it; returns the image's reference.

The tool call is metered in its node at the tool's per-call price; the image itself by its
job's own hold, as every job is (so a failed image costs nothing, by the charge policy).
"""

from __future__ import annotations

from langchain_core.tools import StructuredTool
from langgraph.prebuilt import ToolRuntime
from pydantic import BaseModel, Field

from lipika.agent.tools.base import AgentTool, ToolInputError
from lipika.errors import LipikaError


class GenerateImageInput(BaseModel):
    prompt: str = Field(min_length=1, max_length=4000, description="What the image shows.")
    model: str = Field("demo", max_length=100, description="An image model of the price book.")


async def generate_image(prompt: str, runtime: ToolRuntime, model: str = "demo") -> str:
    ctx = runtime.context
    if ctx.jobs is None:
        raise ToolInputError("image generation is not available on this server")
    try:
        job = await ctx.jobs.run_image(
            ctx.workspace_id,
            ctx.user_id,
            {"prompt": prompt, "model": model},
            thread_id=ctx.thread_id,
        )
    except LipikaError as exc:  # refused (plan, credits, unknown model): the model is told
        raise ToolInputError(exc.message) from None
    if job.status != "succeeded":
        return f"the image job {job.id} {job.status}: {job.error or 'no image'}"
    return f"image ready: job {job.id}, content at /v1/jobs/{job.id}/content"


TOOL = AgentTool(
    StructuredTool.from_function(
        coroutine=generate_image,
        name="generate_image",
        description="Generates an image from a prompt and returns where to fetch it.",
        args_schema=GenerateImageInput,
    ),
    price="agent.generate_image",
)
