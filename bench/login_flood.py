#!/usr/bin/env python
"""Login flood: what 64 clients sending wrong passwords do to a paying client's latency.

    .venv/bin/python bench/login_flood.py [--app-dir DIR ...] [--postgres] [--seconds 20]
        [--clients 64] [--no-limits-too]

For each app directory (default: this checkout; pass another with `--app-dir`, e.g. an
export of main: `git archive main | tar -x -C /tmp/flood-main`), it starts `lipika serve` from
that directory's `src/` (with its `.venv` if it has one) as a subprocess on a free port (embedded: SQLite files in a temporary
data dir; `--postgres`: a throwaway database on 127.0.0.1:5432, dropped at the end, and Redis
127.0.0.1:6379 db 11 with a key prefix of the run's own), signs up a victim and a paying
client, and measures:

- `idle`: the paying client alone, for 5 s;
- `one account`: 64 clients send wrong passwords to the victim, for `--seconds`;
- `many accounts`: 64 clients send wrong passwords to a new e-mail each time (a spray).

The flood runs in its own process, ignores 429/503 and goes on at once (the worst case); the
paying client, in this process, repeats `GET /v1/me` and a non-streamed `demo` chat completion
and records each latency. With `--no-limits-too`, each app that has abuse limits is run a
second time with the login limits set out of reach, which shows the hashing bound alone
(a flood from many addresses is not stopped by the per-address limit).

It prints one table: logins sent and how they were answered, then p50/p95/max of both calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN_DSN = os.environ.get("LIPIKA_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = "redis://127.0.0.1:6379/11"
PASSWORD = f"flood-{uuid.uuid4().hex}"  # strong enough for any password policy
NO_LIMITS = {
    "LIPIKA_LOGIN_FAILURE_LIMITS_PER_ACCOUNT": "100000000/minute",
    "LIPIKA_LOGIN_FAILURE_LIMITS_PER_ADDRESS": "100000000/minute",
}
IDLE_SECONDS = 5
# The paying client's plan: every model, no daily request limit (the free plan's 200 demo
# requests a day would end the measurement).
PLANS = """
[plans.free]
label = "Free (login flood benchmark: no daily limits)"
monthly_credits = 100000
models = ["*"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Row:
    app: str
    scenario: str
    logins: Counter[int] = field(default_factory=Counter)
    me: list[float] = field(default_factory=list)
    chat: list[float] = field(default_factory=list)


# -- the flood (its own process) -----------------------------------------------------------


async def flood(base_url: str, target: str, clients: int, seconds: float) -> Counter[int]:
    answers: Counter[int] = Counter()
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:

        async def attacker() -> None:
            while time.monotonic() < stop_at:
                email = target if target != "*" else f"spray-{uuid.uuid4().hex[:12]}@example.com"
                try:
                    response = await http.post(
                        "/v1/auth/login", json={"email": email, "password": "not the password"}
                    )
                    answers[response.status_code] += 1
                except httpx.HTTPError:
                    answers[0] += 1

        await asyncio.gather(*(attacker() for _ in range(clients)))
    return answers


# -- the server under test ---------------------------------------------------------------


class Server:
    """`lipika serve` from an app directory's `src/`, on a free port."""

    def __init__(self, app_dir: Path, env: dict[str, str]) -> None:
        self.app_dir = app_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIPIKA_")},
            "PYTHONPATH": str(app_dir / "src"),
            "LIPIKA_LOG_LEVEL": "ERROR",
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.log = Path(env["LIPIKA_DATA_DIR"]) / "server.log"

    def lipika(self, *args: str) -> list[str]:
        """The app directory's own `.venv` if it has one (its locked dependencies), else ours."""
        own = self.app_dir / ".venv" / "bin" / "python"
        python = str(own) if own.exists() else sys.executable
        return [python, "-c", "from lipika.cli import main; main()", *args]

    def migrate(self) -> None:
        subprocess.run(self.lipika("migrate"), env=self.env, check=True, capture_output=True)

    async def start(self) -> None:
        self.process = subprocess.Popen(
            self.lipika("serve", "--port", str(self.port)),
            env=self.env,
            cwd=tempfile.gettempdir(),
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                if self.process.poll() is not None:
                    raise SystemExit(f"server from {self.app_dir} exited at start")
                await asyncio.sleep(0.1)
        raise SystemExit(f"server from {self.app_dir} did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def errors_logged(self) -> list[str]:
        """The log lines of unhandled errors (500s)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if "unhandled_error" in line]


@contextlib.contextmanager
def postgres_database() -> object:
    import psycopg

    name = f"lipika_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'CREATE DATABASE "{name}_ckpt"')
    base = ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}", f"{base}/{name}_ckpt"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            for db in (name, f"{name}_ckpt"):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# -- the paying client ---------------------------------------------------------------------


async def sign_up(http: httpx.AsyncClient, server: Server, email: str) -> dict[str, str]:
    """An account and its credentials; where sign-up needs a verified address (no tokens in
    the answer), the address is verified with `lipika users verify` and the account logs in."""
    credentials = {"email": email, "password": PASSWORD}
    response = await http.post("/v1/auth/signup", json=credentials)
    response.raise_for_status()
    if "access_token" not in response.json():
        verify = server.lipika("users", "verify", "--email", email)
        await asyncio.to_thread(subprocess.run, verify, env=server.env, check=True, capture_output=True)
        response = await http.post("/v1/auth/login", json=credentials)
        response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def paying_client(http: httpx.AsyncClient, headers: dict[str, str], row: Row, until: float) -> None:
    chat = {"model": "demo", "max_tokens": 16, "messages": [{"role": "user", "content": "Hello"}]}
    while time.monotonic() < until:
        started = time.perf_counter()
        response = await http.get("/v1/me", headers=headers)
        row.me.append(time.perf_counter() - started)
        response.raise_for_status()
        started = time.perf_counter()
        response = await http.post("/v1/chat/completions", json=chat, headers=headers)
        row.chat.append(time.perf_counter() - started)
        response.raise_for_status()
        await asyncio.sleep(0.05)


async def flood_process(base_url: str, target: str, clients: int, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--flood-worker", base_url, target, str(clients), str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )


async def measure(server: Server, label: str, clients: int, seconds: float) -> list[Row]:
    rows = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
        victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
        await sign_up(http, server, victim)
        headers = await sign_up(http, server, f"payer-{uuid.uuid4().hex[:8]}@example.com")
        for _ in range(5):  # warm up: first requests pay imports and caches
            await paying_client(http, headers, Row(label, "warm-up"), time.monotonic() + 0.5)

        idle = Row(label, "idle")
        await paying_client(http, headers, idle, time.monotonic() + IDLE_SECONDS)
        rows.append(idle)
        for scenario, target in (("one account", victim), ("many accounts", "*")):
            row = Row(label, scenario)
            attack = await flood_process(server.base_url, target, clients, seconds)
            await asyncio.sleep(1)  # let the flood build up
            await paying_client(http, headers, row, time.monotonic() + seconds - 2)
            out, _ = await attack.communicate()
            row.logins.update({int(k): v for k, v in json.loads(out).items()})
            rows.append(row)
            await asyncio.sleep(2)  # let the queue drain before the next scenario
    return rows


async def run_app(app_dir: Path, label: str, env: dict[str, str], args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory() as data_dir:
        plans = Path(data_dir) / "plans.toml"
        plans.write_text(PLANS)
        server = Server(app_dir, {"LIPIKA_DATA_DIR": data_dir, "LIPIKA_PLANS_PATH": str(plans), **env})
        if args.postgres:
            server.migrate()
        await server.start()
        try:
            rows = await measure(server, label, args.clients, args.seconds)
        finally:
            server.stop()
            for line in server.errors_logged()[:1]:
                print(f"{label}: the server's first unhandled error: {line[:2000]}")
        if errors := server.errors_logged():
            print(f"{label}: {len(errors)} unhandled errors (500)")
        return rows


def has_limits(app_dir: Path) -> bool:
    return (app_dir / "src" / "lipika" / "auth" / "limits.py").exists()


async def main(args: argparse.Namespace) -> None:
    apps = [Path(p).resolve() for p in args.app_dir] or [ROOT]
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if args.postgres:
            app_url, checkpoint_url = stack.enter_context(postgres_database())
            env = {
                "LIPIKA_DATABASE_URL": app_url,
                "LIPIKA_CHECKPOINT_DATABASE_URL": checkpoint_url,
                "LIPIKA_REDIS_URL": REDIS_URL,
                "LIPIKA_REDIS_KEY_PREFIX": f"lipika-bench-{uuid.uuid4().hex[:8]}",
            }
        for app_dir in apps:
            label = f"{app_dir.name}@{_commit(app_dir)}"
            rows += await run_app(app_dir, label, env, args)
            if args.no_limits_too and has_limits(app_dir):
                rows += await run_app(app_dir, f"{label} (limits off)", {**env, **NO_LIMITS}, args)
    print_table(rows, args)


def _commit(app_dir: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(app_dir), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return found.stdout.strip() or "export"


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:7.0f} {p95 * 1000:7.0f} {ordered[-1] * 1000:7.0f}"


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    backend = "PostgreSQL + Redis" if args.postgres else "embedded (SQLite, in-process Redis)"
    print(f"\nlogin flood: {args.clients} clients, {args.seconds:g} s per scenario, {backend}, nproc={os.cpu_count()}")
    header = f"{'app':<34} {'scenario':<14} {'logins':>7} {'401':>6} {'429':>6} {'503':>6} {'other':>5}   {'/v1/me ms p50 p95 max':>23}   {'chat ms p50 p95 max':>23}"
    print(header)
    print("-" * len(header))
    for row in rows:
        sent = sum(row.logins.values())
        others = {k: v for k, v in row.logins.items() if k not in (401, 429, 503)}
        other = sum(others.values())
        logins = f"{sent:>7} {row.logins[401]:>6} {row.logins[429]:>6} {row.logins[503]:>6} {other:>5}" if sent else f"{'-':>7} {'':>6} {'':>6} {'':>6} {'':>5}"
        print(f"{row.app:<34} {row.scenario:<14} {logins}   {_ms(row.me):>23}   {_ms(row.chat):>23}")
        if others:
            print(f"{'':<34} {'':<14} other answers (0: no answer): {dict(sorted(others.items()))}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--flood-worker":
        base_url, target, clients, seconds = sys.argv[2:6]
        counts = asyncio.run(flood(base_url, target, int(clients), float(seconds)))
        with contextlib.suppress(BrokenPipeError):
            print(json.dumps(counts))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app-dir", action="append", default=[], help="an app checkout (repeatable)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis instead of embedded")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--no-limits-too", action="store_true", help="also run with login limits off")
    asyncio.run(main(parser.parse_args()))
