#!/usr/bin/env python
"""What LangGraph and its checkpointer cost per agent run, without a model or our server.

    .venv/bin/python bench/checkpoints.py [--runs 300] [--admin-url postgresql://...]

Compiles a one-node graph shaped like the agent's (START -> model -> END over a list of
messages with LangGraph's reducer; the node returns a fixed reply) and sends --runs messages,
each the second message of its own thread, with the CPU time of this process measured around
them. Points: no checkpointer; the PostgreSQL saver on a psycopg pool set up as the app sets it
up (`lipika.checkpoint`), with LangGraph's default durability ("async": a checkpoint per step,
written while the next step runs) and with "exit" (one checkpoint when the run ends); the
SQLite saver (the embedded default). The PostgreSQL database is a throwaway one, dropped at the
end. The client side of PostgreSQL (psycopg) is in the figures; the server's own CPU is not.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import psycopg
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from lipika.agent.checkpoints import open_saver
from lipika.checkpoint import CheckpointDB
from lipika.config import Settings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def model(state: State) -> dict[str, Any]:
    return {"messages": [AIMessage("A short fixed reply.", id=str(uuid.uuid4()))]}


def graph_on(saver: BaseCheckpointSaver | None) -> Any:
    graph = StateGraph(State)
    graph.add_node("model", model)
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    return graph.compile(checkpointer=saver)


async def cpu_per_run(saver: BaseCheckpointSaver | None, durability: str, runs: int) -> float:
    graph = graph_on(saver)
    threads = [str(uuid.uuid4()) for _ in range(runs)]

    async def send(thread_id: str) -> None:
        config = {"configurable": {"thread_id": thread_id}}
        message = HumanMessage("Say something.", id=str(uuid.uuid4()))
        extra = {"durability": durability} if saver is not None else {}
        await graph.ainvoke({"messages": [message]}, config, **extra)

    for thread_id in threads:  # the first message of each thread, and the warm-up
        await send(thread_id)
    start = time.process_time()
    for thread_id in threads:
        await send(thread_id)
    return (time.process_time() - start) * 1000 / runs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()

    database = f"lipika_bench_cp_{secrets.token_hex(4)}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    postgres_url = args.admin_url.rsplit("/", 1)[0] + f"/{database}"
    try:
        with tempfile.TemporaryDirectory() as data:
            points: list[tuple[str, str, str | None]] = [
                ("no checkpointer", "async", None),
                ("PostgreSQL saver, durability async (the app's)", "async", postgres_url),
                ("PostgreSQL saver, durability exit", "exit", postgres_url),
                ("SQLite saver, durability async (embedded)", "async", ""),
            ]
            print(f"{args.runs} runs, each the second message of its thread; CPU of this process")
            for label, durability, url in points:
                if url is None:
                    print(f"  {label}: {await cpu_per_run(None, durability, args.runs):.2f} ms")
                    continue
                settings = Settings(
                    _env_file=None,
                    data_dir=Path(data),
                    **({"checkpoint_database_url": url} if url else {}),
                )
                db = await CheckpointDB.open(settings)
                try:
                    saver = await open_saver(db)
                    ms = await cpu_per_run(saver, durability, args.runs)
                finally:
                    await db.close()
                print(f"  {label}: {ms:.2f} ms")
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
