"""The checkpoint retention policy: each run prunes its thread to the latest N checkpoints, and
`lipika checkpoints prune` does it for every thread and clears deleted threads' checkpoints."""

from __future__ import annotations

import re
import uuid

import httpx
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from lipika.agent.checkpoints import CheckpointRetention
from tests.agent.conftest import request, run_all
from tests.agent.scripted import Reply, Script
from tests.billing.conftest import lipika_cli  # noqa: F401  (the `lipika` command, in process)


async def checkpoints(saver: BaseCheckpointSaver, thread_id: str) -> int:
    return len([c async for c in saver.alist({"configurable": {"thread_id": thread_id}})])


async def blobs(saver: BaseCheckpointSaver, thread_id: str) -> int | None:
    if not isinstance(saver, AsyncPostgresSaver):
        return None
    async with saver.conn.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM checkpoint_blobs WHERE thread_id = %s", (thread_id,)
            )
        ).fetchone()
    return row["n"]


async def test_each_run_keeps_only_the_latest_checkpoints_of_its_thread(
    books, make_agent, checkpoint_saver
) -> None:
    workspace = await books.new_wallet(plan="pro")
    thread = uuid.uuid4()
    script = Script(
        [Reply(tool_calls=[("calculator", {"expression": "1+1"})]), Reply(text="two")] * 3
    )
    agent = make_agent(script, checkpoints_kept_per_thread=3)
    for n in range(3):
        events = await run_all(agent, request(workspace, thread, f"question {n}"))
        assert events[-1]["type"] == "done"
        assert await checkpoints(checkpoint_saver, str(thread)) == 3
    history = await agent.history(thread)
    assert len(history) == 12  # 3 x (question, tool call, tool result, answer): nothing lost
    assert [m.text for m in history[::4]] == ["question 0", "question 1", "question 2"]


async def test_a_thread_is_pruned_once_it_can_hold_more_than_it_keeps(
    books, make_agent, checkpoint_saver, monkeypatch
) -> None:
    """A run of one model step writes three checkpoints (input, start, model); young threads
    skip the prune query, and the bound holds after every run."""
    workspace = await books.new_wallet(plan="pro")
    thread = uuid.uuid4()
    agent = make_agent(checkpoints_kept_per_thread=10)
    pruned = []
    prune = agent.retention.prune

    async def counted(thread_ids):
        pruned.append(list(thread_ids))
        return await prune(thread_ids)

    monkeypatch.setattr(agent.retention, "prune", counted)
    counts = []
    for n in range(5):
        await run_all(agent, request(workspace, thread, f"message {n}"))
        counts.append(await checkpoints(checkpoint_saver, str(thread)))
    assert counts == [3, 6, 9, 10, 10]
    assert pruned == [[str(thread)]] * 2  # from the fourth run on (last step 10: 10 + 3 > 10)
    assert len(await agent.history(thread)) == 10


async def test_pruning_by_hand_keeps_the_history_and_frees_old_blobs(
    books, make_agent, checkpoint_saver
) -> None:
    workspace = await books.new_wallet(plan="pro")
    thread = uuid.uuid4()
    agent = make_agent(checkpoints_kept_per_thread=100)
    for n in range(3):
        await run_all(agent, request(workspace, thread, f"message {n}"))
    history = await agent.history(thread)
    before_checkpoints, before_blobs = (
        await checkpoints(checkpoint_saver, str(thread)),
        await blobs(checkpoint_saver, str(thread)),
    )

    report = await CheckpointRetention(checkpoint_saver, keep=1).prune([str(thread)])

    assert report.checkpoints_deleted == before_checkpoints - 1
    assert await checkpoints(checkpoint_saver, str(thread)) == 1
    if before_blobs is not None:
        assert await blobs(checkpoint_saver, str(thread)) < before_blobs
    assert await agent.history(thread) == history
    # The pruned thread takes new messages as before.
    await run_all(agent, request(workspace, thread, "after pruning"))
    assert len(await agent.history(thread)) == len(history) + 2


async def test_the_prune_command_bounds_every_thread_and_clears_deleted_ones(
    client: httpx.AsyncClient,
    signup,
    threads,
    make_agent,
    books,
    checkpoint_saver,
    lipika_cli,  # noqa: F811
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    for n in range(3):
        await threads.say(account.headers, thread["id"], f"message {n}")
    history = await threads.history(account.headers, thread["id"])
    assert await checkpoints(checkpoint_saver, thread["id"]) > 1
    # Checkpoints of a thread the app database does not know (e.g. deleted with its workspace).
    orphan = uuid.uuid4()
    await run_all(make_agent(), request(await books.new_wallet(plan="pro"), orphan))
    assert await checkpoints(checkpoint_saver, str(orphan)) > 0

    result = await lipika_cli("checkpoints", "prune", "--keep", "1")

    assert result.returncode == 0, result.stderr
    # Other tests' runs leave threads without rows too; all of them are cleared.
    assert re.fullmatch(
        r"threads: \d+, checkpoints deleted: \d+, deleted threads cleared: [1-9]\d*\n",
        result.stdout,
    )
    assert await checkpoints(checkpoint_saver, thread["id"]) == 1
    assert await checkpoints(checkpoint_saver, str(orphan)) == 0
    assert await threads.history(account.headers, thread["id"]) == history
