"""Pod death, with real processes: two `lipika serve` servers on PostgreSQL and Redis.

One accepts a video job and is killed mid-job (SIGKILL): the other adopts it once its lease
expired, completes it and charges once; the client's event stream, reconnected to the survivor,
sees it finish. On SIGTERM the stopping server gives its leases up and the other adopts at once,
long before the lease would expire. One idempotency key sent to both servers at once makes one
job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from lipika.billing.models import HoldStatus
from lipika.config import Settings
from tests.conftest import RUN_KEY_PREFIX
from tests.fixtures.databases import REDIS_URL

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("backend")]

CREDIT = 1_000_000
SHORT_LEASE = 2.0
LONG_LEASE = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pod:
    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    async def ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.url) as http, asyncio.timeout(60):
            while True:
                assert self.process.poll() is None, self.log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)


@pytest.fixture
async def pods(settings: Settings, tmp_path: Path) -> AsyncIterator[Callable[..., Pod]]:
    started: list[Pod] = []
    prefix = f"{RUN_KEY_PREFIX}-pods-{uuid.uuid4().hex[:6]}"

    def start(name: str, lease: float, reconcile: float) -> Pod:
        port = _free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("LIPIKA_")}
        env |= {
            "LIPIKA_DATA_DIR": str(tmp_path / name),
            "LIPIKA_DATABASE_URL": settings.database_url or "",
            "LIPIKA_CHECKPOINT_DATABASE_URL": settings.checkpoint_database_url or "",
            "LIPIKA_REDIS_URL": REDIS_URL,
            "LIPIKA_REDIS_KEY_PREFIX": prefix,
            "LIPIKA_SECRET_KEY": settings.signing_key,
            "LIPIKA_JOB_LEASE_SECONDS": str(lease),
            "LIPIKA_RECONCILE_INTERVAL_SECONDS": str(reconcile),
            "LIPIKA_JOB_POLL_SECONDS": "0.2",
            "LIPIKA_DEMO_JOB_SECONDS": "4",
            "LIPIKA_OUTPUT_STORE_URL": f"file://{tmp_path / 'outputs'}",
            "LIPIKA_DB_POOL_SIZE": "4",
            "LIPIKA_CHECKPOINT_POOL_SIZE": "2",
            "LIPIKA_LOG_LEVEL": "WARNING",
        }
        (tmp_path / "outputs").mkdir(exist_ok=True)
        log = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [str(Path(os.sys.executable).parent / "lipika"), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        pod = Pod(process, port, log)
        started.append(pod)
        return pod

    yield start
    for pod in started:
        if pod.process.poll() is None:
            pod.process.kill()
        pod.process.wait(10)


def _events(lines: list[str]) -> list[dict]:
    return [orjson.loads(line[6:]) for line in lines if line.startswith("data: ")]


async def _follow(
    url: str, job_id: str, headers: dict, *, until: Callable[[dict], bool]
) -> list[dict]:
    """The job's events from `url` up to the first that `until` accepts (or the stream's end)."""
    seen: list[dict] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as stream:
            assert stream.status_code == 200, await stream.aread()
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    seen.append(orjson.loads(line[6:]))
                    if until(seen[-1]):
                        break
    return seen


async def _one_job_charged_once(books, workspace: uuid.UUID, seconds: int) -> None:
    holds = await books.holds(workspace)
    assert [(h.status, h.captured) for h in holds] == [(HoldStatus.CAPTURED, seconds * CREDIT)]
    await books.assert_balanced()


async def test_a_sigkilled_pods_job_is_adopted_completed_and_charged_once(
    pods, client: httpx.AsyncClient, signup, books, db_engine
) -> None:
    first, second = pods("a", SHORT_LEASE, 0.5), pods("b", SHORT_LEASE, 0.5)
    await asyncio.gather(first.ready(), second.ready())
    me = await signup("poddeath")
    workspace = uuid.UUID(me.personal_workspace_id)
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        submitted = await http.post(
            "/v1/videos", json={"prompt": "a comet", "seconds": 4}, headers=me.headers
        )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    seen = await _follow(first.url, job_id, me.headers, until=lambda e: e["type"] == "progress")
    assert seen[0]["type"] == "status" and seen[-1]["type"] == "progress"
    first.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.process.wait(10)

    # The client reconnects, to the survivor, and sees the job finish there.
    events = await _follow(
        second.url, job_id, me.headers, until=lambda e: e["type"] in ("done", "error")
    )
    finished_after = time.monotonic() - killed_at
    assert events[0]["type"] == "status"
    assert events[-1]["type"] == "done", events
    job = events[-1]["job"]
    assert job["attempts"] == 2 and job["credits_charged"] == 4 * CREDIT
    print(f"SIGKILL: job finished on the survivor {finished_after:.2f} s after the kill")
    async with httpx.AsyncClient(base_url=second.url) as http:
        content = await http.get(f"/v1/jobs/{job_id}/content", headers=me.headers)
    assert content.status_code == 200 and b"demo video" in content.content
    await _one_job_charged_once(books, workspace, 4)


async def test_a_sigtermed_pod_hands_its_job_over_without_waiting_for_the_lease(
    pods, client: httpx.AsyncClient, signup, books
) -> None:
    # A lease and a reconcile period far longer than the test: only the hand-off can adopt.
    first, second = pods("a", LONG_LEASE, LONG_LEASE), pods("b", LONG_LEASE, LONG_LEASE)
    await asyncio.gather(first.ready(), second.ready())
    me = await signup("podterm")
    workspace = uuid.UUID(me.personal_workspace_id)
    headers = {**me.headers, "Idempotency-Key": "one-video"}
    body = {"prompt": "a harbour", "seconds": 4}
    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(
            http.post(f"{first.url}/v1/videos", json=body, headers=headers),
            http.post(f"{second.url}/v1/videos", json=body, headers=headers),
        )
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]  # one key, one job
    job_id = answers[0].json()["id"]
    owner = await _owner(books, job_id)
    stopping, staying = (
        (first, second) if owner.split(":")[1] == str(first.process.pid) else (second, first)
    )

    # A client follows the job on the stopping server: uvicorn waits for that stream before the
    # app shuts down, so the hand-off must not wait for the shutdown.
    following = asyncio.create_task(
        _follow(stopping.url, job_id, me.headers, until=lambda e: e["type"] in ("done", "error"))
    )
    await asyncio.sleep(0.5)
    stopping.process.send_signal(signal.SIGTERM)
    termed_at = time.monotonic()
    async with asyncio.timeout(10):  # far inside the 60 s lease
        while (await _owner(books, job_id)).split(":")[1] != str(staying.process.pid):
            await asyncio.sleep(0.1)
    adopted_after = time.monotonic() - termed_at
    assert not following.done()  # adopted while the stopping server still had its stream open
    followed = await asyncio.wait_for(following, 30)  # it ends once the other server is done
    assert followed[-1]["type"] == "done", followed
    await asyncio.to_thread(stopping.process.wait, 30)
    # uvicorn shuts down gracefully, then exits by the signal it got.
    assert stopping.process.returncode in (0, -signal.SIGTERM), stopping.log.read_text()
    print(f"SIGTERM: adopted {adopted_after:.2f} s after the signal (lease {LONG_LEASE:g} s)")
    events = await _follow(
        staying.url, job_id, me.headers, until=lambda e: e["type"] in ("done", "error")
    )
    assert events[-1]["type"] == "done", events
    assert events[-1]["job"]["attempts"] == 2
    await _one_job_charged_once(books, workspace, 4)


async def _owner(books, job_id: str) -> str:
    from sqlalchemy import select

    from lipika.jobs.models import Job

    async with books.sessionmaker() as session:
        owner = await session.scalar(select(Job.lease_owner).where(Job.id == uuid.UUID(job_id)))
    return owner or ":"
