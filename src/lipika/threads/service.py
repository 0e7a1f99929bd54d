"""Thread rules: a thread belongs to one workspace and is private to its creator unless shared
(read-only) with the workspace; it runs one message at a time, under a lease on its row; its
history is read from the checkpoints."""

from __future__ import annotations

import base64
import contextlib
import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.agent.run import AgentRun
from lipika.agent.runner import Agent, RunRequest
from lipika.apikeys.service import key_limits
from lipika.auth.dependencies import Principal
from lipika.billing.policy import Outcome
from lipika.db import utcnow
from lipika.errors import BadRequest, NotFound
from lipika.kit.money import to_micro
from lipika.threads.errors import CreatorOnly, RunInProgress, RunLeaseLost
from lipika.threads.leases import RunLease, RunLeases
from lipika.threads.models import Thread, Visibility
from lipika.threads.repository import ThreadRepository
from lipika.threads.schemas import (
    MessageIn,
    MessageOut,
    MessagePage,
    RunOut,
    ThreadOut,
    ThreadPage,
    ThreadUpdate,
    ToolCallOut,
)
from lipika.workspaces.models import Role

TITLE_CHARS = 80


@dataclass
class Accepted:
    """A message accepted for a run: the thread is leased to it until its run ends."""

    request: RunRequest
    lease: RunLease


class ThreadService:
    def __init__(self, session: AsyncSession, agent: Agent, leases: RunLeases) -> None:
        self.repo = ThreadRepository(session)
        self.agent = agent
        self.leases = leases

    async def create(self, me: Principal, title: str | None, visibility: Visibility) -> ThreadOut:
        now = utcnow()
        thread = Thread(
            workspace_id=me.workspace_id,
            created_by=me.user_id,
            title=title or "",
            visibility=visibility,
            created_at=now,
            updated_at=now,
        )
        await self.repo.add(thread)
        return _out(thread, running=False)

    async def page(self, me: Principal, limit: int, cursor: str | None) -> ThreadPage:
        """The caller's own threads and those shared with the workspace."""
        threads = await self.repo.page(
            me.workspace_id,
            me.user_id,
            limit=limit + 1,
            after=_decode_cursor(cursor) if cursor else None,
        )
        has_more = len(threads) > limit
        threads = threads[:limit]
        return ThreadPage(
            data=[_out(thread, running) for thread, running in threads],
            has_more=has_more,
            next_cursor=_encode_cursor(threads[-1][0]) if has_more else None,
        )

    async def get(self, me: Principal, thread_id: uuid.UUID) -> ThreadOut:
        return _out(*await self._visible(me, thread_id))

    async def update(self, me: Principal, thread_id: uuid.UUID, body: ThreadUpdate) -> ThreadOut:
        """Renames or shares the thread (its creator only)."""
        thread, running = await self._visible(me, thread_id)
        _require_creator(me, thread)
        if body.title is not None:
            thread.title = body.title
        if body.visibility is not None:
            thread.visibility = body.visibility
        return _out(thread, running)

    async def delete(self, me: Principal, thread_id: uuid.UUID) -> None:
        """The creator deletes a thread, with its checkpoints; so may a workspace admin, even a
        thread private to someone else (deleting reveals nothing of it). 409 while it runs."""
        admin = me.role.at_least(Role.ADMIN)
        found = await self.repo.get(
            me.workspace_id, thread_id, viewer=None if admin else me.user_id
        )
        if found is None:
            raise NotFound("thread not found")
        thread = found[0]
        if thread.created_by != me.user_id:
            me.require(Role.ADMIN)
        if not await self.repo.delete_idle(thread.id):
            raise _run_in_progress(thread.id)
        # The row stays locked until the request commits: no run can start while the
        # checkpoints go (a failure here rolls the delete back).
        await self.agent.forget(thread.id)

    async def history(
        self, me: Principal, thread_id: uuid.UUID, limit: int, before: str | None
    ) -> MessagePage:
        thread, _ = await self._visible(me, thread_id)
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
        """Checks the model and leases the thread to the message's run, recording the message
        on the thread in the same statement; 409 while another run holds it.

        The caller commits (which makes the lease visible) before the run starts: the run's
        steps write the ledger on their own connections, and must not wait on this request's
        transaction.
        """
        self.agent.model_price(body.model)
        max_credits = _micro(body.max_credits)
        run_id = uuid.uuid4()
        taken_at = RunLeases.clock()
        fence = await self.repo.take_run(
            thread_id,
            me.workspace_id,
            me.user_id,
            run_id=run_id,
            owner=self.leases.owner,
            lease=self.leases.lease,
            model=body.model,
            title=_title_of(body.content),
        )
        if fence is None:  # not the caller's to write, or a run holds it: say which
            thread, _ = await self._visible(me, thread_id)
            _require_creator(me, thread)
            raise _run_in_progress(thread_id)
        request = RunRequest(
            thread_id=thread_id,
            workspace_id=me.workspace_id,
            user_id=me.user_id,
            content=body.content,
            model=body.model,
            max_output_tokens=body.max_tokens,
            max_steps=body.max_steps,
            max_credits=max_credits,
            api_key=key_limits(me),
            run_id=run_id,
        )
        return Accepted(request, RunLease(thread_id, run_id, fence, taken_at))

    async def _visible(self, me: Principal, thread_id: uuid.UUID) -> tuple[Thread, bool]:
        found = await self.repo.get(me.workspace_id, thread_id, viewer=me.user_id)
        if found is None:
            raise NotFound("thread not found")
        return found


def _require_creator(me: Principal, thread: Thread) -> None:
    if thread.created_by != me.user_id:
        raise CreatorOnly("only the thread's creator may write to it; it is shared read-only")


def _run_in_progress(thread_id: uuid.UUID) -> RunInProgress:
    return RunInProgress(
        "this thread is still answering the previous message; send again when it is done",
        thread_id=str(thread_id),
    )


def _out(thread: Thread, running: bool) -> ThreadOut:
    out = ThreadOut.model_validate(thread)
    out.run_in_progress = running
    return out


async def start_run(agent: Agent, leases: RunLeases, accepted: Accepted) -> AgentRun:
    """Starts the accepted message's run under its lease: the heartbeat renews the lease while
    the run lives, a lost lease stops the run, and the run's end releases it (or here, if the
    run cannot start)."""
    lease = accepted.lease
    try:
        run = agent.prepare(accepted.request, on_finish=functools.partial(leases.release, lease))
        leases.hold(
            lease,
            on_lost=lambda: run.stop(
                RunLeaseLost("the run lost its hold on the thread; send the message again"),
                Outcome.INTERNAL_ERROR,
            ),
        )
        await agent.launch(run)
        return run
    except BaseException:
        await leases.release(lease)
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
        moment = datetime.fromisoformat(updated_at)
        if moment.tzinfo is None:  # every cursor this list makes carries its zone
            raise ValueError(updated_at)
        return moment.astimezone(UTC), uuid.UUID(thread_id)
    except (ValueError, OverflowError):
        raise BadRequest("not a cursor from this list", code="invalid_cursor") from None
