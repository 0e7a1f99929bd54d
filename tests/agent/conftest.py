"""Agent fixtures: the tests' own checkpointer on the checkpoint database, and agents built on
it with a scripted (or slowed) model standing in for the `demo` provider."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import SecretStr

from lipika.agent.checkpoints import open_saver
from lipika.agent.run import AgentRun
from lipika.agent.runner import Agent, RunRequest
from lipika.agent.tools import TOOLS, AgentTool
from lipika.billing.meter import Meter
from lipika.checkpoint import CheckpointDB
from lipika.config import Settings
from lipika.providers.base import ChatProvider
from lipika.providers.registry import build_registry
from tests.agent.scripted import Script
from tests.fixtures.fakes.fixtures import (  # noqa: F401  (the fake provider servers)
    fake_provider_settings,
    fake_providers,
)


@pytest.fixture(scope="session")
async def checkpoint_saver(settings: Settings, app: Any) -> AsyncIterator[BaseCheckpointSaver]:
    """A saver of the tests' own on the checkpoint database (set up by the app at start)."""
    db = await CheckpointDB.open(settings)
    try:
        yield await open_saver(db)
    finally:
        await db.close()


MakeAgent = Callable[..., Agent]


@pytest.fixture
async def make_agent(
    settings: Settings, meter: Meter, checkpoint_saver: BaseCheckpointSaver
) -> AsyncIterator[MakeAgent]:
    """`make_agent(model, tools=..., **settings)`: an agent whose `demo` provider is `model`
    (a `Script`, or any adapter), and whose other providers are built from the settings."""
    registries = []

    def make(
        model: Script | ChatProvider | None = None,
        *,
        tools: Sequence[AgentTool] = TOOLS,
        **settings_overrides: Any,
    ) -> Agent:
        overrides = {
            name: SecretStr(value)
            if name.endswith("_api_key") and isinstance(value, str)
            else value
            for name, value in settings_overrides.items()
        }
        agent_settings = settings.model_copy(update=overrides)
        registries.append(registry := build_registry(agent_settings))
        providers = dict(registry.providers)
        if model is not None:
            providers["demo"] = model.provider() if isinstance(model, Script) else model
        return Agent(agent_settings, meter, checkpoint_saver, providers, tools=tools)

    yield make
    for registry in registries:
        await registry.aclose()


def request(
    workspace_id: uuid.UUID,
    thread_id: uuid.UUID | None = None,
    content: str = "What is six times seven?",
    model: str = "demo",
    **limits: Any,
) -> RunRequest:
    return RunRequest(
        thread_id=thread_id or uuid.uuid4(),
        workspace_id=workspace_id,
        user_id=None,
        content=content,
        model=model,
        **limits,
    )


async def run_all(agent: Agent, run_request: RunRequest) -> list[dict]:
    run: AgentRun = await agent.start(run_request)
    return [event async for event in run.events()]


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]
