"""One run per thread, held by a lease on the thread's row: it survives a Redis restart, a
killed server's threads are free again within the lease, renewal keeps a long run's thread,
a run whose lease was taken over stops, and shutdown frees a server's threads."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.app import create_app
from lipika.billing.models import HoldStatus
from lipika.billing.resolvers import HoldResolvers
from lipika.billing.tasks import Reconciler
from lipika.config import Settings
from lipika.db import utcnow
from lipika.providers.base import ChatProvider
from lipika.providers.demo import DemoProvider
from lipika.threads.leases import RunLease, RunLeases, register_step_holds
from lipika.threads.models import Thread
from lipika.threads.repository import ThreadRepository
from tests.fixtures.fakes.fixtures import FakeProviders
from tests.threads.conftest import events_of, slow_demo

LEASE = 3.0  # seconds: the shortest lease the settings allow
RENEW = LEASE / 3
# Lease plus one renewal period is the promise; the rest is room for a loaded machine.
FREED_WITHIN = LEASE + RENEW + 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def _running(
    app: FastAPI,
) -> AsyncIterator[tuple[dict[str, ChatProvider], httpx.AsyncClient]]:
    """The app with its lifespan, its providers (to swap the demo model), and a client."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
            yield manager._state["providers"].providers, http  # type: ignore[attr-defined]


def _with(settings: Settings, **changes: object) -> Settings:
    """The test settings changed, for an extra app; small pools, as the database is shared."""
    small = {"db_pool_size": 4, "checkpoint_pool_size": 2}
    return Settings(**{**settings.model_dump(), **small, **changes}, _env_file=None)


async def _lease_row(
    engine: AsyncEngine, thread_id: str
) -> tuple[uuid.UUID | None, str | None, datetime | None, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    Thread.run_id, Thread.run_owner, Thread.run_expires_at, Thread.run_fence
                ).where(Thread.id == uuid.UUID(thread_id))
            )
        ).one()
    return row.run_id, row.run_owner, row.run_expires_at, row.run_fence


async def _until_running(http: httpx.AsyncClient, headers: dict, thread_id: str) -> None:
    async with asyncio.timeout(10):
        while not (await http.get(f"/v1/threads/{thread_id}", headers=headers)).json()[
            "run_in_progress"
        ]:
            await asyncio.sleep(0.02)


def _send(http: httpx.AsyncClient, headers: dict, thread_id: str, content: str, **body):
    payload = {"content": content, "model": "demo", **body}
    return http.post(f"/v1/threads/{thread_id}/messages", json=payload, headers=headers)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen]]]:
    """A redis-server of this test's own on a free loopback port (restartable on that port);
    every process started is stopped by its pid at the end."""
    port = _free_port()
    processes: list[subprocess.Popen] = []
    yield port, processes
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


async def _start_redis(port: int, processes: list[subprocess.Popen], where: Path) -> None:
    processes.append(
        subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=where,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    client = aioredis.Redis(port=port)
    try:
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(OSError, aioredis.ConnectionError):
                    if await client.ping():
                        return
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()


@pytest.mark.postgres
async def test_a_redis_restart_mid_run_lets_no_second_run_into_the_thread(
    client: httpx.AsyncClient,
    settings: Settings,
    signup,
    threads,
    books,
    redis_server,
    tmp_path: Path,
) -> None:
    port, processes = redis_server
    await _start_redis(port, processes, tmp_path)
    account = await signup()
    thread = await threads.create(account.headers)
    app = create_app(_with(settings, redis_url=f"redis://127.0.0.1:{port}/0"))
    async with _running(app) as (providers, http):
        providers["demo"] = slow_demo(0.04)
        first = asyncio.create_task(
            _send(http, account.headers, thread["id"], "first", max_tokens=100)
        )
        await _until_running(http, account.headers, thread["id"])

        processes[-1].terminate()  # Redis restarts, empty
        processes[-1].wait(10)
        await _start_redis(port, processes, tmp_path)
        second = await _send(http, account.headers, thread["id"], "second, too early")
        assert (second.status_code, second.json()["error"]["code"]) == (409, "run_in_progress")
        assert not first.done()

        assert events_of(await first)[-1]["type"] == "done"
        providers["demo"] = slow_demo(0)
        assert (
            events_of(await _send(http, account.headers, thread["id"], "second"))[-1]["type"]
            == "done"
        )
        history = (await threads.history(account.headers, thread["id"]))["data"]

    assert [(m["role"], m["content"] if m["role"] == "user" else "") for m in history] == [
        ("user", "first"),
        ("assistant", ""),
        ("user", "second"),
        ("assistant", ""),
    ]
    holds = await books.holds(uuid.UUID(account.personal_workspace_id))
    assert [h.status for h in holds] == [HoldStatus.CAPTURED, HoldStatus.CAPTURED]
    await books.assert_balanced()


@pytest.mark.postgres
async def test_a_killed_servers_thread_is_free_within_the_lease(
    client: httpx.AsyncClient,
    settings: Settings,
    fake_providers: FakeProviders,
    signup,
    threads,
    books,
    tmp_path: Path,
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LIPIKA_")}
    env |= {
        "LIPIKA_DATA_DIR": str(tmp_path / "data"),
        "LIPIKA_DATABASE_URL": settings.database_url or "",
        "LIPIKA_CHECKPOINT_DATABASE_URL": settings.checkpoint_database_url or "",
        "LIPIKA_SECRET_KEY": settings.signing_key,
        "LIPIKA_RUN_LEASE_SECONDS": str(LEASE),
        "LIPIKA_OPENAI_API_KEY": fake_providers.openai.api_key,
        "LIPIKA_OPENAI_BASE_URL": fake_providers.openai.base_url,
        "LIPIKA_PROVIDER_MAX_RETRIES": "0",
        "LIPIKA_DB_POOL_SIZE": "4",
        "LIPIKA_CHECKPOINT_POOL_SIZE": "2",
        "LIPIKA_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "lipika.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as pod:
            async with asyncio.timeout(60):
                while True:
                    assert server.poll() is None, (tmp_path / "server.log").read_text()
                    with contextlib.suppress(httpx.TransportError):
                        if (await pod.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
            body = {
                "content": "A long story [[tokens=3000 delay_ms=20]]",
                "model": "gpt-5-mini",
                "max_tokens": 3000,
            }
            tokens = 0
            with contextlib.suppress(httpx.HTTPError):
                async with pod.stream(
                    "POST",
                    f"/v1/threads/{thread['id']}/messages",
                    json=body,
                    headers=account.headers,
                ) as response:
                    assert response.status_code == 200, await response.aread()
                    # Killed from inside the read loop: leaving it would hang up first.
                    async for line in response.aiter_lines():
                        tokens += line.startswith('data: {"type":"token"')
                        if tokens == 3:
                            # Streaming: the thread is held, also against the other app.
                            busy = await _send(client, account.headers, thread["id"], "meanwhile")
                            assert (busy.status_code, busy.json()["error"]["code"]) == (
                                409,
                                "run_in_progress",
                            )
                            server.send_signal(signal.SIGKILL)
                            killed_at = time.monotonic()
                            server.wait(10)
        assert tokens >= 3 and server.returncode == -signal.SIGKILL

        async with asyncio.timeout(FREED_WITHIN):
            while (
                again := await _send(client, account.headers, thread["id"], "again", stream=False)
            ).status_code == 409:
                await asyncio.sleep(0.1)
        freed_after = time.monotonic() - killed_at
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
        log.close()

    assert again.status_code == 200, again.text
    print(f"thread free {freed_after:.2f} s after SIGKILL (lease {LEASE:g} s)")
    history = (await threads.history(account.headers, thread["id"]))["data"]
    assert [m["role"] for m in history][-2:] == ["user", "assistant"]
    assert history[-2]["content"] == "again"
    # The killed run's hold waits for reconciliation; the books balance meanwhile.
    holds = await books.holds(uuid.UUID(account.personal_workspace_id))
    assert [h.status for h in holds] == [HoldStatus.OPEN, HoldStatus.CAPTURED]
    await books.assert_balanced()

    # The next pass releases it (its run holds no lease), long before the hold's own expiry.
    orphan = holds[0]
    assert orphan.owner_kind == "agent.step" and orphan.expires_at > utcnow() + timedelta(minutes=5)
    await asyncio.sleep(max(0.0, LEASE - (utcnow() - orphan.created_at).total_seconds()) + 0.1)
    resolvers = HoldResolvers()
    register_step_holds(resolvers, books.sessionmaker, LEASE)
    meter = dataclasses.replace(books.meter, resolvers=resolvers)
    try:
        report = await Reconciler(meter, books.sessionmaker).run_once()
    finally:
        await meter.aclose()
    assert report.orphaned_holds == 1
    released = await books.hold(orphan.id)
    assert (released.status, released.outcome, released.captured) == (
        HoldStatus.RELEASED,
        "abandoned",
        0,
    )
    await books.assert_balanced()


@pytest.fixture
async def short_lease(
    settings: Settings,
) -> AsyncIterator[tuple[dict[str, ChatProvider], httpx.AsyncClient]]:
    """An app on the test databases whose runs hold their threads by a 3 s lease."""
    async with _running(create_app(_with(settings, run_lease_seconds=LEASE))) as running:
        yield running


@pytest.fixture
def leased(short_lease, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch):
    """The short-lease app's client, with its demo model slowed to 20 tokens a second and
    writing up to `max_tokens`, for this test (tables are emptied after the test, by `client`)."""
    providers, http = short_lease
    monkeypatch.setitem(
        providers, "demo", DemoProvider(default_reply_tokens=10_000, token_delay=0.05)
    )
    return http


async def test_renewal_keeps_a_run_longer_than_its_lease(
    leased: httpx.AsyncClient, db_engine: AsyncEngine, signup, threads, books
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    run = asyncio.create_task(_send(leased, account.headers, thread["id"], "first", max_tokens=120))
    await _until_running(leased, account.headers, thread["id"])
    run_id, owner, first_expiry, fence = await _lease_row(db_engine, thread["id"])
    assert run_id is not None and first_expiry is not None

    async with asyncio.timeout(LEASE + 5):  # past the lease as first taken
        while utcnow() <= first_expiry + timedelta(seconds=RENEW):
            await asyncio.sleep(0.05)
    assert not run.done()
    refused = await _send(leased, account.headers, thread["id"], "second")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "run_in_progress")
    still = await _lease_row(db_engine, thread["id"])
    assert still[:2] == (run_id, owner) and still[3] == fence and still[2] > first_expiry

    events = events_of(await run)
    assert events[-1]["type"] == "done"
    assert len([e for e in events if e["type"] == "token"]) == 120
    assert (await _lease_row(db_engine, thread["id"]))[0] is None  # released at the end
    await books.assert_balanced()


async def test_a_run_whose_lease_was_taken_over_stops(
    leased: httpx.AsyncClient, db_engine: AsyncEngine, signup, threads, books
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    run = asyncio.create_task(
        _send(leased, account.headers, thread["id"], "first", max_tokens=1000)
    )
    await _until_running(leased, account.headers, thread["id"])
    # Another process takes the thread, as it may once a lease has expired.
    thief = uuid.uuid4()
    async with db_engine.begin() as conn:
        await conn.execute(
            update(Thread)
            .where(Thread.id == uuid.UUID(thread["id"]))
            .values(
                run_id=thief,
                run_owner="another-process",
                run_fence=Thread.run_fence + 1,
                run_expires_at=utcnow() + timedelta(minutes=1),
            )
        )

    async with asyncio.timeout(FREED_WITHIN):  # the 1000 tokens would take 50 s
        response = await run
    if response.headers["content-type"].startswith("application/json"):  # before its 1st token
        error = response.json()["error"]
        assert response.status_code == 503
    else:
        *_, last = events_of(response)
        assert last["type"] == "error"
        error = last["error"]
    assert error["code"] == "run_interrupted"
    [hold] = await books.holds(uuid.UUID(account.personal_workspace_id))
    assert (hold.status, hold.outcome) == (HoldStatus.RELEASED, "internal_error")  # free
    # The stopped run's release left the new holder's lease alone.
    assert (await _lease_row(db_engine, thread["id"]))[:2] == (thief, "another-process")
    await books.assert_balanced()


async def test_shutdown_frees_the_threads_of_the_stopping_server(
    client: httpx.AsyncClient, settings: Settings, db_engine: AsyncEngine, signup, threads, books
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    async with _running(create_app(_with(settings))) as (providers, http):
        providers["demo"] = slow_demo(0.05)
        run = asyncio.create_task(
            _send(http, account.headers, thread["id"], "first", max_tokens=1000)
        )
        await _until_running(http, account.headers, thread["id"])
        async with asyncio.timeout(10):  # its first step holds its credits
            while not await books.holds(uuid.UUID(account.personal_workspace_id)):
                await asyncio.sleep(0.02)
    # The lifespan has ended: the run was stopped and the thread freed, whatever became of the
    # in-process request.
    await asyncio.wait([run], timeout=10)
    assert run.done() and (run.cancelled() or run.exception() or run.result())
    assert (await _lease_row(db_engine, thread["id"]))[0] is None
    read = await client.get(f"/v1/threads/{thread['id']}", headers=account.headers)
    assert read.json()["run_in_progress"] is False
    [hold] = await books.holds(uuid.UUID(account.personal_workspace_id))
    assert hold.status != HoldStatus.OPEN  # settled by the stop
    await books.assert_balanced()


async def test_a_run_whose_lease_goes_unrenewed_stops_before_the_lease_expires(
    client: httpx.AsyncClient, sessionmaker, db_engine: AsyncEngine, signup, threads
) -> None:
    """No heartbeat at all (as when the database cannot be reached): the run is stopped while
    its lease still stands, so nobody else can have taken the thread yet."""
    account = await signup()
    thread = await threads.create(account.headers)
    leases = RunLeases(sessionmaker, LEASE)  # its heartbeat never started
    run_id, taken_at = uuid.uuid4(), RunLeases.clock()
    async with sessionmaker.begin() as session:
        fence = await ThreadRepository(session).take_run(
            uuid.UUID(thread["id"]),
            uuid.UUID(account.personal_workspace_id),
            uuid.UUID(account.user_id),
            run_id=run_id,
            owner=leases.owner,
            lease=leases.lease,
            model="demo",
            title="t",
        )
    assert fence == 1
    async with sessionmaker() as session:  # what reconciliation may ask of an agent step's hold
        assert await ThreadRepository(session).live_runs([run_id, uuid.uuid4()]) == {run_id}
    stopped: asyncio.Future[datetime] = asyncio.get_running_loop().create_future()
    leases.hold(
        RunLease(uuid.UUID(thread["id"]), run_id, fence, taken_at),
        on_lost=lambda: stopped.set_result(utcnow()),
    )
    async with asyncio.timeout(FREED_WITHIN):
        stopped_at = await stopped
    _, _, expires_at, _ = await _lease_row(db_engine, thread["id"])
    assert expires_at is not None and stopped_at < expires_at
    await leases.aclose()
    assert (await _lease_row(db_engine, thread["id"]))[0] is None  # shutdown frees it
    async with sessionmaker() as session:
        assert await ThreadRepository(session).live_runs([run_id]) == set()
