#!/usr/bin/env python
"""Streaming benchmark: our server in the side-by-side peerbench harness, full metering in the path.

    cp -r ../shared/peerbench /tmp/ && /tmp/peerbench/setup.sh      # once
    .venv/bin/python bench/stream.py [--peerbench /tmp/peerbench] [--targets floor,raw,lipika]
        [--conc 1,50,200,500] [--repeats 1] [--backend postgres|sqlite] [-- more bench.py args]

peerbench starts a fake OpenAI upstream (200 tokens at 20 ms, first token at 100 ms), then each
target in turn pinned to CPU 1 (the load generator and the upstream on CPU 0), and measures
added time to first token, CPU seconds per 1,000 relayed chunks, peak RSS and errors.

The `lipika` target is `lipika serve` (one uvicorn worker) with the OpenAI provider pointed at the
fake upstream. Every request is a real metered completion: API-key auth, plan and limit checks,
a hold admitted before the upstream call, settlement from the reported usage after it. The
setup here creates a throwaway database (`lipika_bench_<random>` on PostgreSQL, dropped at the
end, or a SQLite file), a price book with the upstream's `gpt-fake` model, an account on an
unlimited plan with a large grant, and its API key. At the end it audits the ledger and checks
that every stream was charged once (exit 1 otherwise).

`lipika` also accepts `--targets floor,raw,litellm,lipika` (LiteLLM runs from peerbench's venv).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psycopg
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
try:
    import lipika  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(ROOT / "src"))

from lipika import migrate
from lipika.app import create_app
from lipika.billing.commands import Operator
from lipika.billing.models import EntryKind, Hold
from lipika.billing.pricebook import DEFAULT_PATH as PRICEBOOK
from lipika.billing.plans import DEFAULT_PATH as PLANS
from lipika.config import Settings
from lipika.kit.money import MICRO

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
EMAIL = "bench@example.com"
MODEL = "gpt-fake"

FAKE_MODEL = f"""
[models.{MODEL}]
provider = "openai"
label = "peerbench's fake upstream"
context_window = 128000
max_output_tokens = 4096
input_per_mtok = 100
output_per_mtok = 400
"""

UNLIMITED_PLAN = """
[plans.bench]
label = "Benchmark (no limits)"
models = ["*"]
"""


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peerbench", type=Path, default=Path("/tmp/peerbench"))
    parser.add_argument("--targets", default="floor,raw,lipika")
    parser.add_argument("--conc", default="1,50,200,500")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--phases", default="stream")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--port", type=int, default=18003)
    parser.add_argument("--out", default="")
    return parser.parse_known_args()


def environment(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    pricebook = workdir / "pricebook.toml"
    pricebook.write_text(PRICEBOOK.read_text() + FAKE_MODEL)
    plans = workdir / "plans.toml"
    plans.write_text(PLANS.read_text() + UNLIMITED_PLAN)
    (workdir / "data").mkdir()  # the SQLite files, with --backend sqlite
    env = {
        "LIPIKA_DATA_DIR": str(workdir / "data"),
        "LIPIKA_PRICEBOOK_PATH": str(pricebook),
        "LIPIKA_PLANS_PATH": str(plans),
        "LIPIKA_LOG_LEVEL": "WARNING",
        "LIPIKA_OPENAI_API_KEY": "sk-upstream",
        "LIPIKA_PROVIDER_MAX_RETRIES": "0",
    }
    if args.backend == "postgres":
        database = f"lipika_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        env["LIPIKA_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
        env["LIPIKA_REDIS_URL"] = REDIS_URL
    return env


def drop_database(env: dict[str, str]) -> None:
    url = env.get("LIPIKA_DATABASE_URL")
    if url:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def settings_for(env: dict[str, str]) -> Settings:
    fields = {key.removeprefix("LIPIKA_").lower(): value for key, value in env.items()}
    return Settings(_env_file=None, **fields)


async def create_account(settings: Settings) -> str:
    """Signs up, moves the account to the unlimited plan with a big grant; returns an API key."""
    await asyncio.to_thread(migrate.upgrade, settings.app_db_url)
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            signed = await http.post(
                "/v1/auth/signup", json={"email": EMAIL, "password": "benchmark pass", "name": "b"}
            )
            signed.raise_for_status()
            auth = {"Authorization": f"Bearer {signed.json()['access_token']}"}
            key = await http.post("/v1/api-keys", json={"name": "bench"}, headers=auth)
            key.raise_for_status()
    async with Operator.connect(settings) as operator:
        await operator.assign_plan("bench", email=EMAIL, workspace=None)
        await operator.post(
            EntryKind.GRANT, 10**8 * MICRO, "benchmark", email=EMAIL, workspace=None, key=None
        )
    return key.json()["key"]


async def check_books(settings: Settings) -> bool:
    """The audit balances, no hold is left open, and every stream was captured once."""
    async with Operator.connect(settings) as operator:
        checked, drift = await operator.audit()
        async with operator.sessionmaker() as session:
            rows = await session.execute(
                select(Hold.status, func.count(), func.sum(Hold.captured)).group_by(Hold.status)
            )
            holds = {str(status): (count, total) for status, count, total in rows}
    print(f"ledger audit: {checked} wallets checked, drift {drift or 'none'}")
    print("holds by status (count, micro-credits captured):", holds)
    return not drift and set(holds) <= {"captured", "HoldStatus.CAPTURED"}


def main() -> int:
    args, extra = parse_args()
    harness = args.peerbench / ".venv-harness" / "bin" / "python"
    if not harness.exists():
        sys.exit(f"no peerbench at {args.peerbench}: copy ../shared/peerbench there and run setup.sh")
    with tempfile.TemporaryDirectory(prefix="lipika-bench-") as tmp:
        env = environment(args, Path(tmp))
        try:
            settings = settings_for(env)
            key = asyncio.run(create_account(settings))
            serve = (
                f"LIPIKA_OPENAI_BASE_URL={{upstream}}/v1 exec {Path(sys.executable).parent / 'lipika'} "
                f"serve --host 127.0.0.1 --port {{port}}"
            )
            targets = args.targets.replace("lipika", "custom")
            command = [
                str(harness),
                "bench.py",
                "--targets", targets,
                "--conc", args.conc,
                "--repeats", str(args.repeats),
                "--phases", args.phases,
                "--custom-name", "custom",
                "--custom-cmd", serve,
                "--custom-port", str(args.port),
                "--custom-model", MODEL,
                "--custom-key", key,
                *(["--out", args.out] if args.out else []),
                *extra,
            ]  # fmt: skip
            run = subprocess.run(command, cwd=args.peerbench, env={**os.environ, **env})
            balanced = asyncio.run(check_books(settings))
            return 0 if run.returncode == 0 and balanced else 1
        finally:
            drop_database(env)


if __name__ == "__main__":
    sys.exit(main())
