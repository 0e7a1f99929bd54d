"""The agent as the app uses it: one graph per process on the checkpointer, the models and
tools, and the start of runs (see `run.py` for a run's life and its events)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from lipika.agent.checkpoints import CheckpointRetention, open_saver
from lipika.agent.context import RunBudget, RunContext
from lipika.agent.graph import build_graph
from lipika.agent.run import AgentRun
from lipika.agent.tools import JOB_TOOLS, TOOLS, AgentTool, JobTools
from lipika.billing.catalogue import chat_model
from lipika.billing.meter import Meter
from lipika.billing.policy import Outcome
from lipika.billing.pricebook import Price, PriceBookError
from lipika.billing.rules import KeyLimits
from lipika.checkpoint import CheckpointDB
from lipika.config import Settings
from lipika.providers.base import ChatProvider, Tool

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One message to run on a thread, with the caller's limits."""

    thread_id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID | None
    content: str
    model: str
    max_output_tokens: int | None = None
    max_steps: int | None = None
    max_credits: int | None = None
    api_key: KeyLimits | None = None  # the caller's key, whose models and budget bind each step
    # Names the run: in its holds' keys (`agent:<run_id>:<step>`) and on the thread's lease.
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)


class Agent:
    """The compiled graph on its checkpointer, the tools, and what a run needs to start.

    Model steps go through the same provider adapters as chat completions (one connection
    pool per provider, and the relay's cost per token); LangGraph sees each reply whole.
    """

    def __init__(
        self,
        settings: Settings,
        meter: Meter,
        saver: BaseCheckpointSaver,
        providers: Mapping[str, ChatProvider],
        tools: Sequence[AgentTool] | None = None,
        jobs: JobTools | None = None,
    ) -> None:
        if tools is None:
            tools = (*TOOLS, *JOB_TOOLS) if jobs is not None else TOOLS
        self.jobs = jobs
        for tool in tools:
            if meter.price_book.get(tool.price) is None:
                raise PriceBookError(f"the price book does not price the agent tool {tool.price!r}")
        self.settings = settings
        self.meter = meter
        self.saver = saver
        self.tools = {tool.name: tool for tool in tools}
        self.tool_specs = tuple(_spec(tool) for tool in tools)
        self.providers = providers
        self.graph: CompiledStateGraph = build_graph(tools, saver)
        self.retention = CheckpointRetention(saver, settings.checkpoints_kept_per_thread)
        self._runs: set[AgentRun] = set()

    @classmethod
    async def open(
        cls,
        settings: Settings,
        meter: Meter,
        checkpoint_db: CheckpointDB,
        providers: Mapping[str, ChatProvider],
        jobs: JobTools | None = None,
    ) -> Agent:
        return cls(settings, meter, await open_saver(checkpoint_db), providers, jobs=jobs)

    def model_price(self, model: str) -> Price:
        """The model's price; 404 if the price book has no such model, 503 if not configured."""
        return chat_model(self.meter.price_book, self.providers, model)[0]

    async def history(self, thread_id: uuid.UUID) -> list[BaseMessage]:
        """The thread's messages, from its latest checkpoint."""
        snapshot = await self.graph.aget_state(_config(thread_id))
        return list(snapshot.values.get("messages", []))

    async def note(self, thread_id: uuid.UUID, text: str, **metadata: Any) -> None:
        """Adds an assistant message to the thread's history outside a run (a job the thread
        started has ended), as the model node would, so the thread ends there."""
        message = AIMessage(
            content=text,
            id=str(uuid.uuid4()),
            response_metadata={"created_at": datetime.now(UTC).isoformat(), **metadata},
        )
        await self.graph.aupdate_state(_config(thread_id), {"messages": [message]}, as_node="model")

    async def forget(self, thread_id: uuid.UUID) -> None:
        await self.saver.adelete_thread(str(thread_id))

    async def start(
        self, request: RunRequest, on_finish: Callable[[], Awaitable[None]] | None = None
    ) -> AgentRun:
        """Prepares the run and launches it (see `launch`)."""
        run = self.prepare(request, on_finish)
        await self.launch(run)
        return run

    async def launch(self, run: AgentRun) -> None:
        """Starts a prepared run; returns once its first step holds its credits and has
        produced its first event (or after `stream_heartbeat_seconds`, as the chat stream
        waits).

        A run refused before that (not enough credits, model not in the plan, limits) or whose
        provider fails before any output raises its error here, so that the caller can answer
        with a plain HTTP status instead of a stream holding only an error.
        """
        self._runs.add(run)
        run.on_done(self._runs.discard)
        await run.start(first_event_wait=self.settings.stream_heartbeat_seconds)

    def prepare(
        self, request: RunRequest, on_finish: Callable[[], Awaitable[None]] | None = None
    ) -> AgentRun:
        """The run of one message, not started yet (so that the caller can hand it to whatever
        may have to stop it before `launch`)."""
        context = self._context(request)
        now = datetime.now(UTC).isoformat()
        message = HumanMessage(
            content=request.content,
            id=str(uuid.uuid4()),
            response_metadata={"created_at": now, "user_id": str(request.user_id or "")},
        )
        run = AgentRun(
            request.thread_id,
            message.id or "",
            self.graph,
            _config(request.thread_id, context.budget.max_steps),
            {"messages": [message]},
            context,
            budget_seconds=self.settings.stream_budget_seconds,
            on_finish=self._finisher(request.thread_id, context, on_finish),
        )
        return run

    async def aclose(self) -> None:
        """Stops the runs still going (shutdown is our failure: their steps in flight are free)."""
        for run in list(self._runs):
            await run.cancel(Outcome.INTERNAL_ERROR)

    def _context(self, request: RunRequest) -> RunContext:
        price = self.model_price(request.model)
        max_steps = self.settings.agent_max_steps
        return RunContext(
            run_id=request.run_id,
            workspace_id=request.workspace_id,
            user_id=request.user_id,
            meter=self.meter,
            api_key=request.api_key,
            price=price,
            provider=self.providers[price.provider or ""],
            max_output_tokens=price.output_allowance(request.max_output_tokens),
            tools=self.tools,
            tool_specs=self.tool_specs,
            thread_id=request.thread_id,
            jobs=self.jobs,
            budget=RunBudget(
                max_steps=min(request.max_steps or max_steps, max_steps),
                max_credits=request.max_credits,
            ),
        )

    def _finisher(
        self,
        thread_id: uuid.UUID,
        context: RunContext,
        then: Callable[[], Awaitable[None]] | None,
    ) -> Callable[[], Awaitable[None]]:
        async def finish() -> None:
            try:
                if self._may_exceed_retention(context):
                    await self.retention.prune([str(thread_id)])
            except Exception as exc:  # noqa: BLE001 - pruning again later is harmless
                log.warning("checkpoint_prune_failed", thread_id=str(thread_id), error=repr(exc))
            if then is not None:
                await then()

        return finish

    def _may_exceed_retention(self, context: RunContext) -> bool:
        """Whether the thread may hold more checkpoints than are kept, so pruning has work.

        LangGraph numbers a thread's steps on from run to run, starting at -1, and writes one
        checkpoint per step: a thread whose last model step was step k holds at most k + 3
        checkpoints (its tool step, if that failed, included). Most threads are short, and
        skip the query.
        """
        last = context.last_model_step
        return last is None or last + 3 > self.retention.keep


def _config(thread_id: uuid.UUID, max_steps: int | None = None) -> RunnableConfig:
    config: RunnableConfig = {"configurable": {"thread_id": str(thread_id)}}
    if max_steps is not None:
        # Our step cap (every model and tool call) binds first; LangGraph's is a backstop.
        config["recursion_limit"] = 2 * max_steps + 4
    return config


def _spec(tool: AgentTool) -> Tool:
    function = convert_to_openai_tool(tool.tool)["function"]
    return Tool(function["name"], function.get("description", ""), function["parameters"])
