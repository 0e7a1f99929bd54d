#!/usr/bin/env python
"""Payment notification intake: IPNs per second one process verifies, stores and fulfils,
with duplicates mixed in, over real HTTP, against the fake SSLCommerz (its validation call is
part of every accepted delivery's time).

    .venv/bin/python bench/payments_ipn.py [--backend sqlite|postgres] [--orders 300]
        [--duplicates 0.5] [--concurrency 16]

Runs the app in process behind uvicorn on 127.0.0.1 (embedded SQLite in a temporary directory,
or a throwaway PostgreSQL database `lipika_bench_<random>`, dropped at the end), opens `--orders`
pending pack orders, pays each on the fake's hosted page, then posts every IPN once plus
`--duplicates` x as many replays, shuffled, `--concurrency` at a time. Prints deliveries per
second, the latency median and p95 of accepted and replayed deliveries, and checks that every
order was fulfilled exactly once and that the ledger audit balances.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
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
sys.path.insert(0, str(ROOT))
try:
    import lipika  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(ROOT / "src"))

from lipika.app import create_app  # noqa: E402
from lipika.billing.service import BillingService  # noqa: E402
from lipika.config import Settings  # noqa: E402
from lipika.logs import configure_logging  # noqa: E402
from lipika.payments.pricing import Offer  # noqa: E402
from lipika.payments.service import Buyer  # noqa: E402
from lipika.workspaces.models import Workspace, WorkspaceKind  # noqa: E402
from tests.fixtures.fakes.sslcommerz import SSLCommerzFake  # noqa: E402
from tests.fixtures.live import serve  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def run(settings: Settings, orders: int, duplicates: float, concurrency: int) -> None:
    fake = SSLCommerzFake()
    await fake.start()
    settings = Settings(
        **{**settings.model_dump(), **fake.settings_kwargs(), "reconcile_interval_seconds": 3600},
        _env_file=None,
    )
    try:
        async with LifespanManager(create_app(settings)) as manager:
            state = manager._state
            payments = state["payments"]
            async with state["sessionmaker"].begin() as session:
                workspace = Workspace(name="bench", kind=WorkspaceKind.TEAM)
                session.add(workspace)
                await session.flush()
                await BillingService(session, payments.plans).open_wallet(workspace.id)
            buyer = Buyer(workspace.id, None, "bench@example.com", "Bench")
            paid = []
            for _ in range(orders):
                _, url = await payments.checkout(buyer, Offer(pack="credits-500"))
                paid.append(fake.complete(url, "success"))
            deliveries = paid + random.choices(paid, k=int(orders * duplicates))
            random.shuffle(deliveries)
            async with serve(manager.app) as url:
                fake.deliver_to = url
                gate = asyncio.Semaphore(concurrency)
                timings: dict[str, list[float]] = collections.defaultdict(list)
                limits = httpx.Limits(max_connections=concurrency)
                async with httpx.AsyncClient(timeout=60, limits=limits) as http:

                    async def deliver(payment) -> None:  # noqa: ANN001
                        async with gate:
                            started = time.perf_counter()
                            answer = await fake.send_ipn(payment, http)
                            timings[answer.json()["status"]].append(time.perf_counter() - started)

                    started = time.perf_counter()
                    await asyncio.gather(*(deliver(p) for p in deliveries))
                    elapsed = time.perf_counter() - started
            async with state["sessionmaker"]() as session:
                billing = BillingService(session, payments.plans)
                wallet = await billing.wallet(workspace.id)
                checked, drift = await billing.audit()
            print(
                f"  {len(deliveries)} deliveries ({orders} orders, {len(deliveries) - orders} "
                f"replays) in {elapsed:.2f} s: {len(deliveries) / elapsed:.0f} deliveries/s"
            )
            for intake, values in sorted(timings.items()):
                print(
                    f"  {intake:<9} n={len(values):<5} median {statistics.median(values) * 1000:6.1f} ms"
                    f"   p95 {pct(values, 0.95):6.1f} ms"
                )
            fulfilled = wallet.balance == orders * payments.plans.packs["credits-500"].credits
            print(
                f"  every order fulfilled exactly once: {fulfilled}; ledger audit drift: {len(drift)}"
            )
            if not fulfilled or drift or len(timings["accepted"]) != orders:
                raise SystemExit(1)
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--duplicates", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    configure_logging("ERROR", json=True)
    with tempfile.TemporaryDirectory() as tmp:
        common = {"data_dir": Path(tmp), "log_json": True, "log_level": "ERROR"}
        if args.backend == "sqlite":
            print(f"payments IPN intake, embedded SQLite, concurrency {args.concurrency}:")
            asyncio.run(
                run(
                    Settings(**common, _env_file=None),
                    args.orders,
                    args.duplicates,
                    args.concurrency,
                )
            )
            return
        name = f"lipika_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
            admin.execute(f"CREATE DATABASE {name}_cp")
        try:
            from lipika import migrate

            url = f"postgresql://postgres@127.0.0.1:5432/{name}"
            settings = Settings(
                **common,
                database_url=url,
                checkpoint_database_url=f"{url}_cp",
                redis_url="redis://127.0.0.1:6379/0",
                redis_key_prefix=name,
                _env_file=None,
            )
            migrate.upgrade(settings.app_db_url)
            print(f"payments IPN intake, PostgreSQL, concurrency {args.concurrency}:")
            asyncio.run(run(settings, args.orders, args.duplicates, args.concurrency))
        finally:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.execute(f"DROP DATABASE IF EXISTS {name}_cp WITH (FORCE)")


if __name__ == "__main__":
    main()
