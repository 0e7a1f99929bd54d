#!/usr/bin/env python
"""Sign-up and reset answer the same whatever the address: how long each kind of answer takes.

    .venv/bin/python bench/signup.py [--backend sqlite|postgres] [--rounds 40]

Runs the app in process (embedded SQLite in a temporary directory, or a throwaway PostgreSQL
database `lipika_bench_<random>`, dropped at the end), then times, interleaved, sign-ups of new
addresses against sign-ups of registered ones, and reset requests for registered against unknown
addresses. Prints median and p90 per kind, and the difference of the medians. Mail goes to the
log sender (set to WARNING, so nothing is printed) from the mailer's own tasks, after the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parents[1]
try:
    import lipika  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(ROOT / "src"))

from lipika.app import create_app  # noqa: E402
from lipika.config import Settings  # noqa: E402
from lipika.logs import configure_logging  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "correct horse battery"


def summary(name: str, times: list[float]) -> float:
    ordered = sorted(times)
    median = statistics.median(ordered) * 1000
    p90 = ordered[int(len(ordered) * 0.9) - 1] * 1000
    print(f"  {name:<34} median {median:7.1f} ms   p90 {p90:7.1f} ms   n={len(times)}")
    return median


async def timed(http: httpx.AsyncClient, path: str, body: dict) -> tuple[float, str]:
    start = time.perf_counter()
    response = await http.post(path, json=body)
    return time.perf_counter() - start, f"{response.status_code} {response.text}"


async def run(settings: Settings, rounds: int) -> None:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            registered = "registered@example.com"
            await http.post("/v1/auth/signup", json={"email": registered, "password": PASSWORD})
            times: dict[str, list[float]] = {k: [] for k in ("new", "registered", "reset", "unknown")}
            answers: dict[str, set[str]] = {"signup": set(), "reset": set()}
            for i in range(rounds + 3):  # the first rounds warm up
                new = {"email": f"new{i}@example.com", "password": PASSWORD}
                known = {"email": registered, "password": PASSWORD}
                samples = {
                    "new": await timed(http, "/v1/auth/signup", new),
                    "registered": await timed(http, "/v1/auth/signup", known),
                    "reset": await timed(http, "/v1/auth/password-reset", {"email": registered}),
                    "unknown": await timed(
                        http, "/v1/auth/password-reset", {"email": f"nobody{i}@example.com"}
                    ),
                }
                answers["signup"] |= {samples["new"][1], samples["registered"][1]}
                answers["reset"] |= {samples["reset"][1], samples["unknown"][1]}
                if i >= 3:
                    for kind, (seconds, _) in samples.items():
                        times[kind].append(seconds)
                await manager._state["mailer"].drain()  # mail is not part of any answer's time
    print(f"backend: {settings.app_db_url.split(':')[0]}, rounds: {rounds}")
    print(f"  distinct sign-up answers: {sorted(answers['signup'])}")
    print(f"  distinct reset answers:   {sorted(answers['reset'])}")
    a = summary("sign-up, new address", times["new"])
    b = summary("sign-up, registered address", times["registered"])
    print(f"  difference of medians: {a - b:+.1f} ms")
    c = summary("reset, registered address", times["reset"])
    d = summary("reset, unknown address", times["unknown"])
    print(f"  difference of medians: {c - d:+.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    configure_logging("WARNING", json=False)
    with tempfile.TemporaryDirectory(prefix="lipika-bench-") as tmp:
        fields: dict[str, object] = {"data_dir": Path(tmp), "log_level": "WARNING"}
        database = None
        if args.backend == "postgres":
            database = f"lipika_bench_{secrets.token_hex(4)}"
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            fields["database_url"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
        try:
            settings = Settings(_env_file=None, **fields)
            if database:
                from lipika import migrate

                migrate.upgrade(settings.app_db_url)
            asyncio.run(run(settings, args.rounds))
        finally:
            if database:
                with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
