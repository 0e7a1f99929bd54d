"""The jobs API: submit (answered at once), list, read, cancel, follow (SSE), download; and
OpenAI's `POST /v1/images/generations`, answered when the images are ready."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, status
from starlette.responses import StreamingResponse

from lipika.auth.dependencies import CurrentMember, SettingsDep
from lipika.jobs.errors import JobFailed, JobHasNoContent
from lipika.jobs.models import JobStatus
from lipika.jobs.schemas import (
    ImageData,
    ImageGenerationRequest,
    ImagesResponse,
    ImageTokens,
    ImageUsage,
    JobCreate,
    JobDoneEvent,
    JobErrorEvent,
    JobOut,
    JobPage,
    JobStatusEvent,
    VideoParams,
)
from lipika.jobs.service import JobService
from lipika.kit import sse
from lipika.kit.routing import api_router

router = api_router(tags=["jobs"])

IdempotencyKey = Annotated[str | None, Header(max_length=200)]
# How often a stream re-reads the job's row, in case a pub/sub message was lost.
RECHECK_SECONDS = 5.0


async def get_jobs(request: Request) -> JobService:
    return JobService(request.state.jobs)


JobsDep = Annotated[JobService, Depends(get_jobs)]

_EVENTS_DOC = {
    200: {
        "description": "Server-sent events: one `data:` frame per `JobEvent` (told apart by "
        "`type`): the job's `status` first, then `progress`, ending with `done` or `error`.",
        "content": {sse.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/JobEvent"}}},
    }
}


@router.post("/v1/videos", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED)
async def create_video(
    body: VideoParams, me: CurrentMember, jobs: JobsDep, idempotency_key: IdempotencyKey = None
) -> JobOut:
    """Submits a video job and answers at once; follow it at `/v1/jobs/{id}/events`."""
    job = await jobs.submit(me, "video", body.model_dump(exclude_none=True), idempotency_key)
    return await jobs.out(job)


@router.post("/v1/jobs", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED)
async def create_job(
    body: JobCreate, me: CurrentMember, jobs: JobsDep, idempotency_key: IdempotencyKey = None
) -> JobOut:
    """Submits a job of any kind (its `params` are the kind's) and answers at once."""
    job = await jobs.submit(me, body.kind, body.params, idempotency_key)
    return await jobs.out(job)


@router.get("/v1/jobs", response_model=JobPage)
async def list_jobs(
    me: CurrentMember,
    jobs: JobsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=30, pattern=r"^\w+$")] = None,
    status: JobStatus | None = None,
) -> JobPage:
    """The workspace's jobs, newest first (a member sees their own; admins see all)."""
    return await jobs.page(me, limit=limit, cursor=cursor, kind=kind, status=status)


@router.get("/v1/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: uuid.UUID, me: CurrentMember, jobs: JobsDep) -> JobOut:
    return await jobs.out(await jobs.get(me, job_id))


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel_job(job_id: uuid.UUID, me: CurrentMember, jobs: JobsDep) -> JobOut:
    """Cancels a queued or running job, free; 409 if it has already ended."""
    return await jobs.out(await jobs.cancel(me, job_id))


@router.get("/v1/jobs/{job_id}/events", response_model=None, responses=_EVENTS_DOC)
async def job_events(
    job_id: uuid.UUID, me: CurrentMember, jobs: JobsDep, settings: SettingsDep
) -> sse.EventStream:
    """The job's progress as server-sent events; reconnect at will (it starts from the row)."""
    await jobs.get(me, job_id)  # 404 before the stream starts
    return sse.sse_response(
        _follow(jobs, me, job_id, settings.stream_budget_seconds),
        heartbeat=settings.stream_heartbeat_seconds,
    )


async def _follow(
    jobs: JobService, me: Any, job_id: uuid.UUID, budget: float
) -> AsyncIterator[bytes]:
    events = jobs.runner.events
    loop = asyncio.get_running_loop()
    ends = loop.time() + budget
    async with events.subscribe(events.channel(job_id)) as subscription:
        job = await jobs.get(me, job_id)
        yield sse.frame(JobStatusEvent(job=await jobs.out(job)).model_dump(mode="json"))
        while not job.status.terminal:
            left = ends - loop.time()
            if left <= 0:
                return
            event = await subscription.next(timeout=min(RECHECK_SECONDS, left))
            if event is not None and event.get("type") == "progress":
                yield sse.frame(event)
                continue
            job = await jobs.get(me, job_id)
        out = await jobs.out(job)
        if job.status is JobStatus.SUCCEEDED:
            yield sse.frame(JobDoneEvent(job=out).model_dump(mode="json"))
        else:
            error = {"code": job.error_code or job.status.value, "message": job.error_message}
            yield sse.frame(JobErrorEvent(error=error, job=out).model_dump(mode="json"))


@router.get(
    "/v1/jobs/{job_id}/content",
    response_class=StreamingResponse,
    responses={200: {"description": "The job's output, as made (`content-type` says which)."}},
)
async def job_content(
    job_id: uuid.UUID,
    me: CurrentMember,
    jobs: JobsDep,
    index: Annotated[int, Query(ge=0, le=100)] = 0,
) -> StreamingResponse:
    """The job's output `index` (0 for a video), streamed."""
    job = await jobs.get(me, job_id)
    refs = {r["index"]: r for r in job.result or []}
    if index not in refs:
        raise JobHasNoContent(
            f"the job has no output {index} (it is {job.status.value})", param="index"
        )
    ref = refs[index]
    return StreamingResponse(
        jobs.runner.store.stream(ref["key"]),
        media_type=ref["content_type"],
        headers={"content-length": str(ref["bytes"])},
    )


@router.post("/v1/images/generations", response_model=ImagesResponse)
async def generate_images(
    body: ImageGenerationRequest,
    me: CurrentMember,
    jobs: JobsDep,
    idempotency_key: IdempotencyKey = None,
) -> ImagesResponse:
    """OpenAI-compatible image generation: runs as an image job, answered when it is ready
    (images as `b64_json`); a failure is the job's error, and free."""
    params = body.model_dump(include={"prompt", "model", "n", "size", "quality"}, exclude_none=True)
    job = await jobs.submit(me, "image", params, idempotency_key)
    task = jobs.runner.task_of(job.id)
    if task is not None:
        await asyncio.shield(task)  # the job goes on (and settles) if the client leaves
    job = await jobs.get(me, job.id)
    while not job.status.terminal:  # a repeated key whose job runs elsewhere
        await asyncio.sleep(0.2)
        job = await jobs.get(me, job.id)
    if job.status is not JobStatus.SUCCEEDED:
        raise _job_error(job)
    data = [
        ImageData(b64_json=base64.b64encode(await jobs.runner.store.read(r["key"])).decode())
        for r in job.result or []
    ]
    usage = job.usage or {}
    tokens_in = usage.get("text_input_tokens", 0) + usage.get("image_input_tokens", 0)
    tokens_out = usage.get("image_output_tokens", 0)
    content_type = (job.result or [{}])[0].get("content_type", "image/png")
    return ImagesResponse(
        created=int(job.created_at.timestamp()),
        data=data,
        output_format=content_type.partition("/")[2].partition("+")[0],
        usage=ImageUsage(
            input_tokens=tokens_in,
            input_tokens_details=ImageTokens(
                text_tokens=usage.get("text_input_tokens", 0),
                image_tokens=usage.get("image_input_tokens", 0),
            ),
            output_tokens=tokens_out,
            output_tokens_details=ImageTokens(image_tokens=tokens_out),
            total_tokens=tokens_in + tokens_out,
        )
        if tokens_in or tokens_out
        else None,
    )


def _job_error(job: Any) -> JobFailed:
    if job.status is JobStatus.CANCELLED:
        status_code = 409
    elif job.outcome == "refused_by_provider":
        status_code = 400
    else:
        status_code = 502
    message = job.error_message or "the image job failed"
    return JobFailed(message, code=job.error_code or "job_failed", status_code=status_code)
