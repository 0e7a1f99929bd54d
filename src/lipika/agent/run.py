"""One run of the agent graph on one thread: a task that feeds a queue of typed events.

The run executes as its own task, so that a silent model never stalls the heartbeats, and so
that its end (releasing the thread, pruning checkpoints) happens whether or not anyone is still
listening. Events (plain dicts, framed by the caller):

    {"type": "token", "text": ...}
    {"type": "tool_start", "step", "call_id", "tool", "args"}
    {"type": "tool_end", "step", "call_id", "tool", "status", "output", "credits_charged", "balance_after"}
    {"type": "usage", "step", "model", "input_tokens", "cached_input_tokens", "output_tokens",
     "credits_charged", "balance_after"}                     (after every model step)
    {"type": "done", "credits_charged", "balance_after", "steps"}           (terminal)
    {"type": "error", "error": {type, code, message, param, details}, "credits_charged", ...} (terminal)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.graph.state import CompiledStateGraph

from lipika.agent.context import RunContext
from lipika.agent.errors import RunInternalError, RunStepLimitReached, RunTimedOut
from lipika.billing.policy import Outcome
from lipika.errors import LipikaError

log = structlog.get_logger()

Event = dict[str, Any]
Deliver = Callable[[Event], Awaitable[None]]


class AgentRun:
    """One run of the graph on one thread, as a task whose events go to a queue (`events()`)
    or, once a streamed response has attached (`stream_to`), out from the run's own task."""

    def __init__(
        self,
        thread_id: uuid.UUID,
        message_id: str,
        graph: CompiledStateGraph,
        config: RunnableConfig,
        graph_input: Mapping[str, Any],
        context: RunContext,
        *,
        budget_seconds: float,
        on_finish: Callable[[], Awaitable[None]],
    ) -> None:
        self.thread_id = thread_id
        self.message_id = message_id  # the user's message that started the run
        self.graph = graph
        self.config = config
        self.input = graph_input
        self.context = context
        self.budget_seconds = budget_seconds
        self.on_finish = on_finish
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self.error: LipikaError | None = None  # why the run failed, once it has
        self._task: asyncio.Task[None] | None = None
        self._done_callbacks: list[Callable[[AgentRun], object]] = []
        self._first_event: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._streaming = False
        self._sink: Deliver | None = None
        self._writing = False  # blocked handing an event to a slow client
        self._ended = asyncio.Event()  # the terminal event is out (delivered or queued)
        self._stopped_by: LipikaError | None = None  # why `stop` ended the run, if it did
        context.emit = self._emit

    @property
    def run_id(self) -> uuid.UUID:
        return self.context.run_id

    def on_done(self, callback: Callable[[AgentRun], object]) -> None:
        self._done_callbacks.append(callback)

    async def start(self, first_event_wait: float = 0) -> None:
        """Starts the run's task; returns once its first step is admitted and has produced an
        event (or `first_event_wait` seconds have passed). A run that ended before streaming
        anything raises its error here instead."""
        if self._stopped_by is not None:
            raise self._stopped_by
        self._task = task = asyncio.create_task(self._run(), name=f"agent-run-{self.run_id}")
        for callback in self._done_callbacks:
            task.add_done_callback(lambda _, cb=callback: cb(self))
        try:
            admitted = self.context.admitted
            await asyncio.wait({admitted, task}, return_when=asyncio.FIRST_COMPLETED)
            if admitted.done() and first_event_wait > 0:
                await asyncio.wait(
                    {self._first_event, task},
                    timeout=first_event_wait,
                    return_when=asyncio.FIRST_COMPLETED,
                )
        except asyncio.CancelledError:
            await self.cancel(Outcome.CLIENT_DISCONNECT)
            raise
        if not self.context.admitted.done() or (task.done() and not self._first_event.done()):
            await task
            raise self.error or RunInternalError("the run ended before it started")
        self._streaming = True  # from here on, errors are the stream's terminal event

    async def events(self) -> AsyncIterator[Event]:
        """The run's events up to the terminal one. Leaving early cancels the run (the client
        went away): the step in flight is settled by the charge policy for a disconnect."""
        ended = False
        try:
            while (event := await self._events.get()) is not None:
                yield event
            ended = True
        finally:
            if not ended:
                await self.cancel(Outcome.CLIENT_DISCONNECT)

    async def stream_to(self, deliver: Deliver) -> None:
        """Delivers the run's events, up to the terminal one, with `deliver`: the events queued
        so far from this task, then every later one from the run's own task as it is made, so
        a token is not handed from task to task. Cancelled (the client left), it cancels the
        run: the step in flight is settled by the charge policy for a disconnect."""
        ended = False
        try:
            while not self._events.empty():
                event = self._events.get_nowait()
                if event is None:
                    ended = True
                    return
                await deliver(event)
            self._sink = deliver  # the queue is empty and nothing ran since: order is kept
            await self._ended.wait()
            ended = True
        finally:
            self._sink = None
            if not ended:
                await self.cancel(Outcome.CLIENT_DISCONNECT)

    async def _emit(self, event: Event) -> None:
        """Where the nodes' events go (not through LangGraph's stream, which costs more per
        token than the rest of the relay)."""
        if self._sink is None:
            self._events.put_nowait(event)
        else:
            self._writing = True
            try:
                await self._sink(event)
            except OSError:  # the client left: its response cancels the run
                self._sink = None
            finally:
                self._writing = False
        if not self._first_event.done():
            self._first_event.set_result(None)

    async def cancel(self, reason: Outcome) -> None:
        """Stops the run, if it still runs, and waits until it has settled and finished."""
        task = self._task
        if task is None or task.done():
            return
        self.context.stop_reason = reason
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    def stop(self, error: LipikaError, reason: Outcome) -> None:
        """Ends the run from outside with `error` as its terminal event (or the error `start`
        raises); the step in flight settles by `reason`. Returns at once."""
        if self._stopped_by is not None or (self._task is not None and self._task.done()):
            return
        self._stopped_by = error
        self.context.stop_reason = reason
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        watchdog = loop.call_later(self.budget_seconds, self._out_of_time)
        terminal: Event | None = None
        try:
            await self.graph.ainvoke(self.input, self.config, context=self.context)
            terminal = {"type": "done", **self.totals()}
        except asyncio.CancelledError:
            if self._stopped_by is None:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            terminal = self._failed(self._stopped_by)
        except LipikaError as exc:
            terminal = self._failed(exc)
        except GraphRecursionError:
            terminal = self._failed(RunStepLimitReached("the run reached its step limit"))
        except Exception as exc:  # noqa: BLE001 - the client gets a typed error either way
            log.exception("agent_run_failed", run_id=str(self.run_id), error=repr(exc))
            terminal = self._failed(RunInternalError("the agent failed"))
        finally:
            watchdog.cancel()
            try:
                # The thread is released before the terminal event goes out, so a client that
                # sends its next message on `done` is never refused as a double text.
                await asyncio.shield(self._finish())
                if terminal is not None:
                    await self._emit(terminal)
            finally:
                self._events.put_nowait(None)
                self._ended.set()

    async def _finish(self) -> None:
        try:
            await self.on_finish()
        except Exception as exc:  # noqa: BLE001
            log.exception("agent_run_finish_failed", run_id=str(self.run_id), error=repr(exc))

    def _out_of_time(self) -> None:
        # Out of time while blocked on a client too slow to read: its doing, charged what was
        # sent (as a hang-up); otherwise the provider's timeout, free (the charge policy).
        self.stop(
            RunTimedOut(f"the run took longer than {self.budget_seconds:g} s"),
            Outcome.CLIENT_DISCONNECT if self._writing else Outcome.PROVIDER_TIMEOUT,
        )

    def _failed(self, error: LipikaError) -> Event | None:
        """The terminal error event; None for a run refused before it was admitted, whose
        error `start()` raises instead."""
        self.error = error
        if not self._first_event.done() and not self._streaming:
            return None  # nothing streamed and start() still waits: it raises the error instead
        return {"type": "error", **error.body(), **self.totals()}

    def totals(self) -> Event:
        budget = self.context.budget
        return {
            "credits_charged": budget.spent,
            "balance_after": self.context.balance_after,
            "steps": budget.steps,
        }
