#!/usr/bin/env python
"""What idempotency keys and plan rate limits add to a non-streamed demo completion.

    .venv/bin/python bench/gateway.py [--backend sqlite|postgres] [--rounds 200]

Runs the app in process (embedded SQLite in a temporary directory, or a throwaway PostgreSQL
database `lipika_bench_<random>` with Redis at 127.0.0.1:6379, dropped at the end), on the
team plan with a large grant, then times, interleaved, completions sent: without a key; with a
new `Idempotency-Key` each (a claim, then the stored answer); and the same key again (a replay).
Prints median and p90 of each, and the differences of the medians. The rate limits count every
completion (two windows each for requests and tokens of the workspace, on the shared counters).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parents[1]
try:
    import lipika  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(ROOT / "src"))

from lipika import migrate  # noqa: E402
from lipika.app import create_app  # noqa: E402
from lipika.auth.commands import IdentityCommands  # noqa: E402
from lipika.billing.commands import Operator  # noqa: E402
from lipika.billing.models import EntryKind  # noqa: E402
from lipika.config import Settings  # noqa: E402
from lipika.kit.money import MICRO  # noqa: E402
from lipika.logs import configure_logging  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
EMAIL, PASSWORD = "bench@example.com", "correct horse battery"
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def summary(name: str, times: list[float]) -> float:
    ordered = sorted(times)
    median = statistics.median(ordered) * 1000
    p90 = ordered[int(len(ordered) * 0.9) - 1] * 1000
    print(f"  {name:<28} median {median:7.2f} ms   p90 {p90:7.2f} ms   n={len(times)}")
    return median


async def account(http: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    credentials = {"email": EMAIL, "password": PASSWORD}
    (await http.post("/v1/auth/signup", json={**credentials, "name": "b"})).raise_for_status()
    async with IdentityCommands.connect(settings) as identities:
        await identities.verify(EMAIL)
    login = await http.post("/v1/auth/login", json=credentials)
    login.raise_for_status()
    async with Operator.connect(settings) as operator:
        await operator.assign_plan("team", email=EMAIL, workspace=None)
        await operator.post(
            EntryKind.GRANT, 10**6 * MICRO, "benchmark", email=EMAIL, workspace=None, key=None
        )
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def timed(http: httpx.AsyncClient, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    response = await http.post("/v1/chat/completions", json=CHAT, headers=headers)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"unexpected answer: {response.status_code} {response.text}")
    return elapsed


async def run(settings: Settings, rounds: int) -> None:
    await asyncio.to_thread(migrate.upgrade, settings.app_db_url)
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            auth = await account(http, settings)
            times: dict[str, list[float]] = {"no key": [], "new key": [], "replay": []}
            for i in range(rounds + 5):  # the first rounds warm up
                key = {**auth, "Idempotency-Key": uuid.uuid4().hex}
                samples = {
                    "no key": await timed(http, auth),
                    "new key": await timed(http, key),
                    "replay": await timed(http, key),
                }
                if i >= 5:
                    for kind, seconds in samples.items():
                        times[kind].append(seconds)
    medians = {kind: summary(kind, t) for kind, t in times.items()}
    print(f"  a key costs {medians['new key'] - medians['no key']:+.2f} ms (median)")
    print(f"  a replay is {medians['no key'] - medians['replay']:+.2f} ms faster than a completion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    with tempfile.TemporaryDirectory() as data_dir:
        common = {"data_dir": Path(data_dir), "log_json": True, "log_level": "WARNING"}
        if args.backend == "sqlite":
            asyncio.run(run(Settings(_env_file=None, **common), args.rounds))
            return
        names = [f"lipika_bench_{secrets.token_hex(4)}" for _ in range(2)]
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}"')
        base = ADMIN_DSN.rsplit("/", 1)[0]
        try:
            settings = Settings(
                _env_file=None,
                **common,
                database_url=f"{base}/{names[0]}",
                checkpoint_database_url=f"{base}/{names[1]}",
                redis_url="redis://127.0.0.1:6379/0",
                redis_key_prefix=f"lipika-bench-{secrets.token_hex(4)}",
            )
            asyncio.run(run(settings, args.rounds))
        finally:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                for name in names:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
