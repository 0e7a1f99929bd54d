from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response, status

from lipika.agent.run import AgentRun
from lipika.agent.runner import Agent
from lipika.auth.dependencies import CurrentMember, SettingsDep
from lipika.db import SessionDep
from lipika.idempotency.dependencies import Idempotent
from lipika.kit import sse
from lipika.kit.routing import api_router
from lipika.ratelimits.dependencies import RateLimitsDep
from lipika.threads.leases import RunLeases
from lipika.threads.schemas import (
    MessageIn,
    MessagePage,
    RunOut,
    ThreadCreate,
    ThreadOut,
    ThreadPage,
    ThreadUpdate,
)
from lipika.threads.service import ThreadService, run_to_completion, start_run

router = api_router(tags=["threads"])


async def get_agent(request: Request) -> Agent:
    return request.state.agent


AgentDep = Annotated[Agent, Depends(get_agent)]


async def get_leases(request: Request) -> RunLeases:
    return request.state.run_leases


LeasesDep = Annotated[RunLeases, Depends(get_leases)]


async def get_threads(session: SessionDep, agent: AgentDep, leases: LeasesDep) -> ThreadService:
    return ThreadService(session, agent, leases)


ThreadsDep = Annotated[ThreadService, Depends(get_threads)]


@router.post(
    "/v1/threads",
    response_model=ThreadOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
)
async def create_thread(body: ThreadCreate, me: CurrentMember, threads: ThreadsDep) -> ThreadOut:
    """A new thread in the caller's workspace, private to the caller unless `visibility` is
    `workspace`."""
    return await threads.create(me, body.title, body.visibility)


@router.get("/v1/threads", response_model=ThreadPage)
async def list_threads(
    me: CurrentMember,
    threads: ThreadsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ThreadPage:
    """The caller's threads and those shared with the workspace, most recently active first."""
    return await threads.page(me, limit, cursor)


@router.get("/v1/threads/{thread_id}", response_model=ThreadOut)
async def get_thread(thread_id: uuid.UUID, me: CurrentMember, threads: ThreadsDep) -> ThreadOut:
    """A thread the caller may see (404 otherwise)."""
    return await threads.get(me, thread_id)


@router.patch("/v1/threads/{thread_id}", response_model=ThreadOut)
async def update_thread(
    thread_id: uuid.UUID, body: ThreadUpdate, me: CurrentMember, threads: ThreadsDep
) -> ThreadOut:
    """Renames or shares the thread (its creator only)."""
    return await threads.update(me, thread_id, body)


@router.delete("/v1/threads/{thread_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_thread(thread_id: uuid.UUID, me: CurrentMember, threads: ThreadsDep) -> None:
    """The thread and its history (its creator, or a workspace admin even of a private
    thread; 409 while it runs)."""
    await threads.delete(me, thread_id)


@router.get("/v1/threads/{thread_id}/messages", response_model=MessagePage)
async def thread_history(
    thread_id: uuid.UUID,
    me: CurrentMember,
    threads: ThreadsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[str | None, Query(max_length=200, description="a message id")] = None,
) -> MessagePage:
    """The thread's messages, oldest first: the last `limit` (before `before`)."""
    return await threads.history(me, thread_id, limit, before)


@router.post(
    "/v1/threads/{thread_id}/messages",
    response_model=RunOut,
    dependencies=[Idempotent],
    responses={
        200: {
            "content": {sse.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ThreadEvent"}}},
            "description": "With `stream: true` (the default): server-sent events, one "
            "`ThreadEvent` per `data:` frame (told apart by `type`), ending with `done` or "
            "`error`; with `stream: false`, the run's `RunOut`.",
        }
    },
)
async def send_message(
    thread_id: uuid.UUID,
    body: MessageIn,
    me: CurrentMember,
    session: SessionDep,
    threads: ThreadsDep,
    agent: AgentDep,
    leases: LeasesDep,
    settings: SettingsDep,
    rate_limits: RateLimitsDep,
    response: Response,
) -> Response | RunOut:
    """Runs the agent on the message with the chosen model and streams the answer as typed
    events (`token`, `tool_start`, `tool_end`, `usage`, then `done` or `error`).

    Only the thread's creator sends messages. A refusal before the first step (402 credits,
    403 model not in plan, 429 limits, 409 `run_in_progress` while the thread answers another
    message) is a plain HTTP error. A message counts as one request against the plan's
    requests per minute (its steps' tokens are not counted per minute).
    """
    counted = await rate_limits.count(me, 0)
    accepted = await threads.accept(me, thread_id, body)
    # End the request's transaction (taking the lease) before the run writes the ledger; if
    # the commit fails, the lease was never taken.
    await session.commit()
    run = await start_run(agent, leases, accepted)
    if not body.stream:
        response.headers.update(counted.headers())
        return await run_to_completion(agent, run)
    events = sse.EventStream(_producer(run), heartbeat=settings.stream_heartbeat_seconds)
    events.headers.update(counted.headers())
    return events


def _producer(run: AgentRun) -> sse.Producer:
    async def produce(write: sse.Write) -> None:
        async def deliver(event: dict[str, Any]) -> None:
            await write(sse.frame(event))

        await run.stream_to(deliver)

    return produce
