"""Thread rules: a thread belongs to one workspace, runs one message at a time, and reads its
history from the checkpoints."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from redis.asyncio import Redis
from redis.exceptions import LockError
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.agent.run import AgentRun
from lipika.agent.runner import Agent, RunRequest
from lipika.auth.dependencies import Principal
from lipika.db import utcnow
from lipika.errors import BadRequest, Conflict, NotFound
from lipika.kit.money import to_micro
from lipika.threads.models import Thread
from lipika.threads.repository import ThreadRepository
from lipika.threads.schemas import (
    MessageIn,
    MessageOut,
    MessagePage,
    RunOut,
    ThreadOut,
    ThreadPage,
    ToolCallOut,
)
from lipika.workspaces.models import Role

TITLE_CHARS = 80
# A run never outlives the stream budget; the lock outlives it by this much in case the
# process dies before releasing it.
LOCK_GRACE_SECONDS = 60


class RunInProgress(Conflict):
    code = "run_in_progress"


class RunLocks:
    """One run per thread at a time, across processes: a Redis lock with a TTL, held from
    the moment a message is accepted until its run has finished."""

    def __init__(self, redis: Redis, ttl_seconds: float) -> None:
        self.redis = redis
        self.ttl = ttl_seconds + LOCK_GRACE_SECONDS

    @staticmethod
    def key(thread_id: uuid.UUID) -> str:
        return f"lipika:thread-run:{thread_id}"

    async def acquire(self, thread_id: uuid.UUID) -> Callable[[], Awaitable[None]]:
        """Takes the thread's lock or refuses with 409 `run_in_progress`; returns its release."""
        lock = self.redis.lock(
            self.key(thread_id), timeout=self.ttl, blocking=False, thread_local=False
        )
        if not await lock.acquire():
            raise RunInProgress(
                "this thread is still answering the previous message; send again when it is done",
                thread_id=str(thread_id),
            )

        async def release() -> None:
            with contextlib.suppress(LockError):  # expired: another run may hold it now
                await lock.release()

        return release

    async def running(self, thread_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not thread_ids:
            return set()
        values = await self.redis.mget([self.key(t) for t in thread_ids])
        return {t for t, value in zip(thread_ids, values, strict=True) if value is not None}


@dataclass
class Accepted:
    """A message accepted for a run: the thread is locked until `release` is called."""

    request: RunRequest
    release: Callable[[], Awaitable[None]]


class ThreadService:
    def __init__(self, session: AsyncSession, agent: Agent, locks: RunLocks) -> None:
        self.repo = ThreadRepository(session)
        self.agent = agent
        self.locks = locks

    async def create(self, me: Principal, title: str | None) -> ThreadOut:
        now = utcnow()
        thread = Thread(
            workspace_id=me.workspace_id,
            created_by=me.user_id,
            title=title or "",
            created_at=now,
            updated_at=now,
        )
        await self.repo.add(thread)
        return ThreadOut.model_validate(thread)

    async def page(self, me: Principal, limit: int, cursor: str | None) -> ThreadPage:
        threads = await self.repo.page(
            me.workspace_id, limit=limit + 1, after=_decode_cursor(cursor) if cursor else None
        )
        has_more = len(threads) > limit
        threads = threads[:limit]
        running = await self.locks.running([t.id for t in threads])
        return ThreadPage(
            data=[self._out(t, t.id in running) for t in threads],
            has_more=has_more,
            next_cursor=_encode_cursor(threads[-1]) if has_more else None,
        )

    async def get(self, me: Principal, thread_id: uuid.UUID) -> ThreadOut:
        thread = await self._thread(me, thread_id)
        return self._out(thread, bool(await self.locks.running([thread.id])))

    async def rename(self, me: Principal, thread_id: uuid.UUID, title: str) -> ThreadOut:
        thread = await self._thread(me, thread_id)
        thread.title = title
        return await self.get(me, thread.id)

    async def delete(self, me: Principal, thread_id: uuid.UUID) -> None:
        """The creator or a workspace admin deletes a thread, with its checkpoints."""
        thread = await self._thread(me, thread_id)
        if thread.created_by != me.user_id:
            me.require(Role.ADMIN)
        release = await self.locks.acquire(thread.id)  # not while it runs
        try:
            await self.agent.forget(thread.id)
            await self.repo.delete(thread.id)
        finally:
            await release()

    async def history(
        self, me: Principal, thread_id: uuid.UUID, limit: int, before: str | None
    ) -> MessagePage:
        thread = await self._thread(me, thread_id)
        messages = await self.agent.history(thread.id)
        end = len(messages)
        if before is not None:
            end = next((i for i, m in enumerate(messages) if m.id == before), -1)
            if end < 0:
                raise BadRequest(f"no message {before!r} in this thread", code="invalid_cursor")
        start = max(end - limit, 0)
        page = messages[start:end]
        return MessagePage(
            data=[message_out(m) for m in page],
            has_more=start > 0,
            next_before=page[0].id if start > 0 and page else None,
        )

    async def accept(self, me: Principal, thread_id: uuid.UUID, body: MessageIn) -> Accepted:
        """Checks the model and locks the thread for the message's run (409 while one runs).

        The caller commits before the run starts: the run's steps write the ledger on their own
        connections, and must not wait on this request's transaction.
        """
        self.agent.model_price(body.model)
        max_credits = _micro(body.max_credits)
        thread = await self._thread(me, thread_id)
        release = await self.locks.acquire(thread.id)
        if not thread.title:
            thread.title = _title_of(body.content)
        thread.updated_at = utcnow()
        thread.last_model = body.model
        request = RunRequest(
            thread_id=thread.id,
            workspace_id=me.workspace_id,
            user_id=me.user_id,
            content=body.content,
            model=body.model,
            max_output_tokens=body.max_tokens,
            max_steps=body.max_steps,
            max_credits=max_credits,
        )
        return Accepted(request, release)

    async def _thread(self, me: Principal, thread_id: uuid.UUID) -> Thread:
        thread = await self.repo.get(me.workspace_id, thread_id)
        if thread is None:
            raise NotFound("thread not found")
        return thread

    @staticmethod
    def _out(thread: Thread, running: bool) -> ThreadOut:
        out = ThreadOut.model_validate(thread)
        out.run_in_progress = running
        return out


async def start_run(agent: Agent, accepted: Accepted) -> AgentRun:
    """Starts the accepted message's run; the thread is released when the run ends (or here,
    if it cannot start)."""
    try:
        return await agent.start(accepted.request, on_finish=accepted.release)
    except BaseException:
        await accepted.release()
        raise


async def run_to_completion(agent: Agent, run: AgentRun) -> RunOut:
    """The answer to a message sent with `stream: false`; a failed run raises its error."""
    async for _ in run.events():
        pass
    if run.error is not None:
        raise run.error
    messages = await agent.history(run.thread_id)
    ids = [m.id for m in messages]
    added = messages[ids.index(run.message_id) + 1 :] if run.message_id in ids else []
    totals = run.totals()
    return RunOut(
        thread_id=run.thread_id,
        messages=[message_out(m) for m in added],
        credits_charged=totals["credits_charged"],
        balance_after=totals["balance_after"],
        steps=totals["steps"],
    )


def message_out(message: BaseMessage) -> MessageOut:
    meta = message.response_metadata or {}
    out = MessageOut(
        id=message.id or "",
        role=_role(message),
        content=str(message.text),
        created_at=_datetime(meta.get("created_at")),
        credits_charged=meta.get("credits_charged"),
    )
    if isinstance(message, AIMessage):
        out.model = meta.get("model")
        out.tool_calls = [
            ToolCallOut(id=c["id"] or "", name=c["name"], args=c["args"])
            for c in message.tool_calls
        ]
    elif isinstance(message, ToolMessage):
        out.tool_call_id = message.tool_call_id
        out.tool_name = message.name
        out.status = message.status
    return out


def _role(message: BaseMessage) -> str:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ToolMessage):
        return "tool"
    return "system"


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value)
    return None


def _title_of(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _micro(credits: Decimal | None) -> int | None:
    if credits is None:
        return None
    try:
        return to_micro(credits)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_amount") from None


def _encode_cursor(thread: Thread) -> str:
    raw = f"{thread.updated_at.isoformat()}|{thread.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        updated_at, thread_id = raw.split("|")
        return datetime.fromisoformat(updated_at), uuid.UUID(thread_id)
    except ValueError:
        raise BadRequest("not a cursor from this list", code="invalid_cursor") from None
