"""Deep research, as facts a job can act on: a task is created, its status read until it ended
(or told by a signed callback), and it may be cancelled. Two providers speak it: `valyu`
(providers/valyu.py) and `demo` (below), so the embedded default runs the whole flow.

A status carries the provider's own cost once the task ended (`cost_usd`); billing converts it
through the price book and never charges above the hold.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from lipika.providers.errors import ProviderRejected

MODES = ("instant", "fast", "standard", "heavy", "max")
MAX_QUERY_CHARS = 25_000  # Valyu's limit on a query
ResearchState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class ResearchTask:
    """What to research; `mode` is the price book's per-task SKU suffix."""

    query: str
    mode: str = "standard"
    output_formats: Sequence[str] = ("markdown",)
    urls: Sequence[str] = ()
    webhook_url: str | None = None


@dataclass(frozen=True, slots=True)
class CreatedTask:
    id: str
    webhook_secret: str | None  # returned once, only when a webhook URL was given


@dataclass(frozen=True, slots=True)
class Source:
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class ResearchStatus:
    """Where a task stands. `cost_usd` is Valyu's own figure once it ended (None before)."""

    id: str
    state: ResearchState
    step: int = 0
    total_steps: int = 0
    sources: tuple[Source, ...] = ()
    title: str | None = None
    output: Any = None  # markdown text, or the JSON the task's schema asked for
    cost_usd: Decimal | None = None
    error: str | None = None
    etag: str | None = field(default=None, compare=False)

    @property
    def ended(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")


class ResearchProvider(Protocol):
    name: str

    async def create(self, task: ResearchTask) -> CreatedTask: ...

    async def status(self, task_id: str, etag: str | None = None) -> ResearchStatus | None:
        """None when `etag` still matches (nothing changed)."""

    async def cancel(self, task_id: str) -> None: ...

    async def aclose(self) -> None: ...


# -- the demo provider --------------------------------------------------------------------------

# The demo's own mode (`research.demo` in the price book), and Valyu's modes simulated too.
DEMO_STEPS = {"demo": 5, "instant": 2, "fast": 4, "standard": 6, "heavy": 8, "max": 10}
DEMO_COST_USD = Decimal("0.08")  # what a finished demo task reports (within its hold)


@dataclass(eq=False)
class DemoResearch:
    """A simulated multi-step task, deterministic, with progress and sources.

    The task's whole schedule is in its id (its start time, mode and step length), so its
    status is a pure function of the id and the clock: it survives a restart and reads the same
    from every process, as a real provider's task does. A cancellation is the one fact kept in
    memory (a demo task cancelled on one process still finishes on another).
    """

    step_seconds: float = 20.0  # LIPIKA_DEMO_RESEARCH_STEP_SECONDS: a standard task takes 2 min
    clock: Any = time.time
    name: str = "demo"
    _cancelled: dict[str, float] = field(default_factory=dict)

    async def create(self, task: ResearchTask) -> CreatedTask:
        if task.mode not in DEMO_STEPS:
            raise ProviderRejected(f"unknown research mode {task.mode!r}")
        digest = hashlib.sha256(task.query.encode()).hexdigest()[:8]
        started_ms = int(self.clock() * 1000)
        step_ms = max(1, int(self.step_seconds * 1000))
        task_id = f"demo-{task.mode}-{started_ms}-{step_ms}-{digest}-{uuid.uuid4().hex[:8]}"
        return CreatedTask(task_id, webhook_secret=None)  # the demo polls only

    async def status(self, task_id: str, etag: str | None = None) -> ResearchStatus | None:
        try:
            _, mode, started_ms, step_ms, digest, _ = task_id.split("-")
            started, step = int(started_ms) / 1000, int(step_ms) / 1000
            steps = DEMO_STEPS[mode]
        except (ValueError, KeyError) as exc:
            raise ProviderRejected(f"no demo research task {task_id!r}") from exc
        now = self._cancelled.get(task_id, self.clock())
        done = min(steps, max(0, int((now - started) / step)))
        sources = tuple(
            Source(f"Demo source {i} on {digest}", f"https://example.org/demo/{digest}/{i}")
            for i in range(1, done + 1)
        )
        if task_id in self._cancelled:
            state: ResearchState = "cancelled"
        elif done >= steps:
            state = "succeeded"
        else:
            state = "running" if done else "queued"
        status = ResearchStatus(
            id=task_id,
            state=state,
            step=done,
            total_steps=steps,
            sources=sources,
            title="Demo report" if state == "succeeded" else None,
            output=_demo_report(digest, sources) if state == "succeeded" else None,
            cost_usd=DEMO_COST_USD if state == "succeeded" else None,
            etag=f'"{state}-{done}"',
        )
        return None if etag is not None and etag == status.etag else status

    async def cancel(self, task_id: str) -> None:
        current = await self.status(task_id)
        if current is not None and not current.ended:
            self._cancelled[task_id] = self.clock()

    async def aclose(self) -> None:
        return None


def _demo_report(digest: str, sources: Sequence[Source]) -> str:
    lines = [f"# Demo report {digest}", "", "A simulated research report.", "", "## Sources"]
    lines += [f"- [{s.title}]({s.url})" for s in sources]
    return "\n".join(lines) + "\n"


def as_mapping(status: ResearchStatus) -> Mapping[str, Any]:
    """A status as the JSON a job keeps and its event stream sends."""
    return {
        "state": status.state,
        "step": status.step,
        "total_steps": status.total_steps,
        "sources": [{"title": s.title, "url": s.url} for s in status.sources],
        "title": status.title,
    }
