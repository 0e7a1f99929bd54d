"""The periodic loop: tasks at their own periods, the pods sitting out told so, one lock per
key prefix, and every domain's task registered in the app."""

from __future__ import annotations

import asyncio

import fakeredis
import httpx
from asgi_lifespan import LifespanManager

from lipika.app import create_app
from lipika.config import Settings
from lipika.kit.tasks import cancel_and_wait
from lipika.periodic import PeriodicTasks, lock_name


async def test_a_task_runs_once_per_its_period_and_a_failure_skips_only_itself() -> None:
    runs: list[str] = []

    async def often() -> None:
        runs.append("often")

    async def rarely() -> None:
        runs.append("rarely")

    async def broken() -> None:
        raise RuntimeError("boom")

    tasks = PeriodicTasks()
    tasks.register("broken", broken)
    tasks.register("often", often)
    tasks.register("rarely", rarely, every=3600)
    for _ in range(3):
        await tasks.run_once()
    assert runs == ["often", "rarely", "often", "often"]


async def test_a_pod_without_the_lock_sits_out_and_runs_nothing() -> None:
    server = fakeredis.FakeServer()
    holder, other = (fakeredis.FakeAsyncRedis(server=server) for _ in range(2))
    ran, idled = [], []

    async def work() -> None:
        ran.append(1)

    tasks = PeriodicTasks(lock_name("deployment-a"))
    tasks.register("work", work, every=3600, idle=lambda: idled.append(1))
    assert await holder.lock(tasks.lock, timeout=60).acquire(blocking=False)
    loop = asyncio.create_task(tasks.run_forever(other, interval=0.01))
    await asyncio.sleep(0.1)
    await cancel_and_wait(loop)
    assert ran == [] and len(idled) > 1

    # Another deployment's loop, under its own prefix, is not held back by that lock.
    theirs = PeriodicTasks(lock_name("deployment-b"))
    theirs.register("work", work)
    loop = asyncio.create_task(theirs.run_forever(other, interval=0.01))
    await asyncio.sleep(0.1)
    await cancel_and_wait(loop)
    assert ran


def test_tasks_names_are_unique() -> None:
    tasks = PeriodicTasks()
    tasks.register("a", lambda: asyncio.sleep(0))
    try:
        tasks.register("a", lambda: asyncio.sleep(0))
    except ValueError as exc:
        assert "'a'" in str(exc)
    else:
        raise AssertionError("a second task of one name was accepted")


async def test_the_app_registers_reconciliation_and_the_invariant_check(settings: Settings) -> None:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        periodic = manager._state["periodic"]
        assert {"billing.reconcile", "ops.invariants"} <= set(periodic.entries)
        assert periodic.lock == lock_name(settings.redis_key_prefix)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/healthz")).status_code == 200
