#!/usr/bin/env python
"""Ledger hot-path benchmark: Meter.admit + Meter.capture pairs against a real PostgreSQL.

    .venv/bin/python bench/ledger.py [--seconds N] [--concurrency 1,16,64] [--wallets hot,many]
    .venv/bin/python bench/ledger.py --baseline main [--seconds N] ...   # side by side

Creates a throwaway database `lipika_bench_<random>`, migrates it to head, opens wallets on the
"team" plan with a huge grant, then runs workers that each loop admit -> capture and records
the latency of every pair. The database is dropped at the end (also on Ctrl-C or an error).

Scenarios
  hot     every worker admits against ONE workspace's wallet (the contended row)
  many    each worker has its own workspace and wallet (no row contention)
  extend  every worker holds one hold on the hot wallet and extends it by 1 micro-credit in a
          loop (Meter.extend; the "pairs/s" column counts extend calls per second)

--baseline REF runs every scenario of the table twice per row, once with the code of the git
ref REF (exported to a temporary directory, run with its own bench script) and once with this
checkout, alternating which goes first, each in its own process and database, and prints the
two rates side by side (extend only for this checkout when the baseline has no Meter.extend).

Limits: admissions pass user_id=None (unless --members), so the per-member daily request
counter and member cap are not taken; the team plan has no daily credit cap. Admit therefore
runs no usage_counters upsert, and capture no counter update. With --members each worker gets
its own user (a member of its workspace) and the team plan's daily request limit is raised to
10^9 in memory, so admit also runs the per-member request-counter upsert.

Not a test: it prints a table and exits 1 only if the ledger audit finds drift (or it failed).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy import event, insert
from sqlalchemy.engine import make_url

try:
    import lipika  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lipika.auth.models import User
from lipika.billing.meter import Meter, build_meter
from lipika.billing.models import EntryKind
from lipika.billing.policy import Outcome
from lipika.billing.service import BillingService
from lipika.config import Settings
from lipika.db import create_engine, create_sessionmaker, utcnow
from lipika.migrate import upgrade
from lipika.workspaces.models import Membership, Role, Workspace, WorkspaceKind

DEFAULT_ADMIN_URL = os.environ.get("LIPIKA_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_POOL = Settings.model_fields["db_pool_size"].default  # 15
PLAN = "team"
PRICE = "demo"
MAX_USAGE = {"input_tokens": 1000, "output_tokens": 500}
USAGE = {"input_tokens": 900, "output_tokens": 300}
GRANT = 10**15  # micro-credits (10^9 credits): admissions never fail for lack of credits
WARMUP_SECONDS = 1.0


# -- machine facts ----------------------------------------------------------------------------


def machine_facts(admin_url: str) -> list[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('synchronous_commit', 'fsync', 'max_connections', 'shared_buffers', 'wal_sync_method')"
            ).fetchall()
        )
    import asyncpg
    import sqlalchemy

    return [
        f"nproc: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        f"python: {platform.python_version()} ({platform.python_implementation()}), "
        f"SQLAlchemy {sqlalchemy.__version__}, asyncpg {asyncpg.__version__}",
        f"postgresql: {version}",
        "load average (1/5/15 min) at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "server settings: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())),
    ]


# -- CPU accounting (PostgreSQL on this host only) -------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> dict[int, float] | None:
    """utime+stime of every local `postgres` process, by pid (None if /proc is unavailable)."""
    out: dict[int, float] = {}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        comm_end = raw.rfind(")")
        if raw[raw.find("(") + 1 : comm_end] != "postgres":
            continue
        fields = raw[comm_end + 2 :].split()
        out[int(pid)] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return out


def host_busy_seconds() -> float | None:
    """CPU seconds all cores spent not idle (from /proc/stat), to show load from other processes."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK


def backend_pids(admin_url: str, database: str) -> set[int]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        ).fetchall()
    return {pid for (pid,) in rows}


def cpu_delta(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    if before is None or after is None:
        return None
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


# -- database lifecycle ----------------------------------------------------------------------


def create_database(admin_url: str) -> tuple[str, str]:
    name = f"lipika_bench_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return name, url


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def is_local(url: str) -> bool:
    return make_url(url).host in (None, "", "localhost", "127.0.0.1", "::1")


# -- setup -----------------------------------------------------------------------------------


@dataclass
class Fixture:
    hot: uuid.UUID
    many: list[uuid.UUID]
    users: list[uuid.UUID | None]  # one per worker slot; None without --members


async def make_fixture(database_url: str, slots: int, members: bool) -> Fixture:
    settings = Settings(database_url=database_url, db_pool_size=2)
    engine = create_engine(settings)
    meter = build_meter(settings, engine)
    team = meter.plans.get(PLAN)
    assert team is not None and team.daily_credit_cap is None, (
        "the bench needs a 'team' plan without a daily cap"
    )
    assert meter.price_book.get(PRICE) is not None, f"the price book has no {PRICE!r}"
    now = utcnow()
    hot = uuid.uuid4()
    many = [uuid.uuid4() for _ in range(slots)]
    users: list[uuid.UUID | None] = [uuid.uuid4() if members else None for _ in range(slots)]
    try:
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(
                insert(Workspace.__table__),
                [
                    {"id": ws, "name": f"bench {i}", "kind": WorkspaceKind.TEAM, "created_at": now}
                    for i, ws in enumerate([hot, *many])
                ],
            )
            if members:
                await session.execute(
                    insert(User.__table__),
                    [
                        {"id": u, "email": f"bench{i}@example.com", "name": f"bench {i}",
                         "password_hash": "x", "created_at": now}
                        for i, u in enumerate(users)
                    ],
                )
                rows = [
                    {"workspace_id": hot, "user_id": u, "role": Role.MEMBER, "created_at": now}
                    for u in users
                ]
                rows += [
                    {"workspace_id": ws, "user_id": u, "role": Role.OWNER, "created_at": now}
                    for ws, u in zip(many, users, strict=True)
                ]
                await session.execute(insert(Membership.__table__), rows)
            billing = BillingService(session, meter.plans)
            for ws in [hot, *many]:
                await billing.open_wallet(ws)
                await billing.assign_plan(ws, PLAN)
                await billing.post(ws, EntryKind.GRANT, GRANT, f"bench-grant:{ws}", reason="benchmark grant")
    finally:
        await engine.dispose()
    return Fixture(hot, many, users)


def bench_meter(settings: Settings, engine, members: bool) -> Meter:
    meter = build_meter(settings, engine)
    if members:  # one member per worker: raise the team plan's per-member daily request limit
        team = meter.plans.get(PLAN)
        raised = dataclasses.replace(team, daily_requests={"*": 10**9})
        meter = dataclasses.replace(
            meter, plans=dataclasses.replace(meter.plans, plans={**meter.plans.plans, PLAN: raised})
        )
    return meter


def apply_session_settings(engine, session_settings: dict[str, str]) -> None:
    """Session-level SETs on every new pooled connection (experiments only; server config untouched)."""
    if not session_settings:
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        async def _set(conn):
            for name, value in session_settings.items():
                await conn.execute(f"SET {name} TO {value}")

        dbapi_connection.run_async(_set)


# -- statement census ------------------------------------------------------------------------


async def statement_census(database_url: str, fixture: Fixture, members: bool, pairs: int = 5) -> list[str]:
    """Runs a few pairs serially and lists what each admit and capture sends to PostgreSQL."""
    settings = Settings(database_url=database_url, db_pool_size=1)
    engine = create_engine(settings)
    meter = bench_meter(settings, engine, members)
    phase = {"name": None}
    seen: dict[str, list[str]] = {"admit": [], "capture": []}
    counts: Counter[str] = Counter()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):
        if phase["name"]:
            counts[phase["name"], "begin"] += 1
            seen[phase["name"]].append("BEGIN")

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(conn):
        if phase["name"]:
            counts[phase["name"], "commit"] += 1
            seen[phase["name"]].append("COMMIT")

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _stmt(conn, cursor, statement, parameters, context, executemany):
        if phase["name"]:
            counts[phase["name"], "stmt"] += 1
            seen[phase["name"]].append(_describe(statement))

    try:
        for i in range(pairs + 1):  # the first pair prepares the statements on the connection
            if i == 1:
                counts.clear()
                seen = {"admit": [], "capture": []}
            phase["name"] = "admit"
            ticket = await meter.admit(
                fixture.hot, fixture.users[0], operation="bench", price=PRICE, max_usage=MAX_USAGE
            )
            phase["name"] = "capture"
            await meter.capture(ticket.hold_id, USAGE, rates=ticket.rates)
            phase["name"] = None
    finally:
        await engine.dispose()
    lines = []
    for name in ("admit", "capture"):
        stmts = counts[name, "stmt"] / pairs
        trips = (counts[name, "stmt"] + counts[name, "begin"] + counts[name, "commit"]) / pairs
        per_call = seen[name][: len(seen[name]) // pairs]
        lines.append(
            f"{name:8s} {stmts:g} statements, {trips:g} round trips: " + "; ".join(per_call)
        )
    return lines


def _describe(sql: str) -> str:
    words = sql.split()
    verb = words[0].upper()
    table = ""
    upper = [w.upper() for w in words]
    for marker in ("FROM", "INTO", "UPDATE"):
        if marker in upper:
            table = words[upper.index(marker) + 1]
            break
    suffix = " ON CONFLICT" if "ON CONFLICT" in sql.upper() else ""
    suffix += " RETURNING" if " RETURNING " in sql.upper() else ""
    return f"{verb} {table}{suffix}"


# -- the measurement -------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    concurrency: int
    pool: int
    seconds: float
    latencies: list[float]
    errors: Counter[str] = field(default_factory=Counter)
    py_cpu: float | None = None  # seconds of this process's CPU in the window
    pg_cpu: float | None = None  # seconds of CPU of the bench database's backends in the window
    host_cpu: float | None = None  # seconds of CPU the whole host was busy in the window
    waits: Counter[str] = field(default_factory=Counter)  # pg_stat_activity samples (--waits)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def extend_worker(
    meter: Meter,
    workspace: uuid.UUID,
    user: uuid.UUID | None,
    measure_from: float,
    deadline: float,
    result: Result,
) -> list[float]:
    """Extends one hold by a micro-credit at a time, as a speech session grows its hold."""
    ticket = await meter.admit(workspace, user, operation="bench", price=PRICE, max_usage=MAX_USAGE)
    latencies = []
    while (t0 := time.perf_counter()) < deadline:
        try:
            await meter.extend(ticket.hold_id, 1)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            if t0 >= measure_from:
                result.errors[f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"] += 1
            await asyncio.sleep(0.01)
            continue
        t1 = time.perf_counter()
        if t0 >= measure_from and t1 <= deadline:
            latencies.append(t1 - t0)
    await meter.release(ticket.hold_id, Outcome.INTERNAL_ERROR)
    return latencies


async def run_scenario(
    database_url: str,
    fixture: Fixture,
    scenario: str,
    concurrency: int,
    pool: int,
    seconds: float,
    *,
    members: bool,
    session_settings: dict[str, str],
    measure_pg_cpu: bool,
    admin_url: str,
    sample_waits: bool = False,
) -> Result:
    settings = Settings(database_url=database_url, db_pool_size=pool)
    engine = create_engine(settings)
    apply_session_settings(engine, session_settings)
    meter = bench_meter(settings, engine, members)
    result = Result(scenario, concurrency, pool, seconds, [])
    start = time.perf_counter()
    measure_from = start + WARMUP_SECONDS
    deadline = measure_from + seconds

    async def worker(slot: int) -> list[float]:
        workspace = fixture.many[slot] if scenario == "many" else fixture.hot
        user = fixture.users[slot]
        latencies = []
        if scenario == "extend":
            return await extend_worker(meter, workspace, user, measure_from, deadline, result)
        while (t0 := time.perf_counter()) < deadline:
            try:
                ticket = await meter.admit(
                    workspace, user, operation="bench", price=PRICE, max_usage=MAX_USAGE
                )
                await meter.capture(ticket.hold_id, USAGE, rates=ticket.rates)
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                if t0 >= measure_from:
                    result.errors[f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"] += 1
                await asyncio.sleep(0.01)
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= deadline:
                latencies.append(t1 - t0)
        return latencies

    async def cpu_window() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        py0, host0 = time.process_time(), host_busy_seconds()
        pg0 = postgres_cpu_seconds() if measure_pg_cpu else None
        await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
        py1, host1 = time.process_time(), host_busy_seconds()
        pg1 = postgres_cpu_seconds() if measure_pg_cpu else None
        result.py_cpu = py1 - py0
        if pg1 is not None:  # only the backends serving the bench database (the pool's connections)
            backends = await asyncio.to_thread(backend_pids, admin_url, make_url(database_url).database)
            pg1 = {pid: t for pid, t in pg1.items() if pid in backends}
        result.pg_cpu = cpu_delta(pg0, pg1)
        result.host_cpu = None if host0 is None or host1 is None else host1 - host0

    sampler = None
    if sample_waits:
        sampler = WaitSampler(admin_url, make_url(database_url).database, measure_from, deadline)
    if sampler:
        sampler.start()
    try:
        *per_worker, _ = await asyncio.gather(*(worker(i) for i in range(concurrency)), cpu_window())
    finally:
        await engine.dispose()
        if sampler:
            sampler.join()
            result.waits = sampler.samples
    result.latencies = [lat for lats in per_worker for lat in lats]
    return result


class WaitSampler(threading.Thread):
    """Samples what the bench database's backends are doing (pg_stat_activity) every 10 ms.

    ClientRead inside a transaction means the backend waits for Python to send the next
    statement (possibly while holding the hot wallet's row lock); Lock:transactionid/tuple
    means it waits for that row lock; IO:WALSync/WALWrite is the commit flush; CPU is running.
    """

    QUERY = """
        SELECT CASE
                 WHEN state = 'idle' THEN 'idle (between transactions)'
                 WHEN wait_event IS NULL THEN 'CPU (running)'
                 WHEN wait_event = 'ClientRead' THEN 'ClientRead (' || state || ')'
                 ELSE wait_event_type || ':' || wait_event
               END
        FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
    """

    def __init__(self, admin_url: str, database: str, start: float, stop: float) -> None:
        super().__init__(daemon=True)
        self.admin_url, self.database, self.t_start, self.t_stop = admin_url, database, start, stop
        self.samples: Counter[str] = Counter()

    def run(self) -> None:
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                time.sleep(max(0.0, self.t_start - time.perf_counter()))
                while time.perf_counter() < self.t_stop:
                    for (what,) in conn.execute(self.QUERY, (self.database,)).fetchall():
                        self.samples[what] += 1
                    time.sleep(0.01)
        except Exception as exc:  # noqa: BLE001 - a diagnostic; never fail the run for it
            self.samples[f"sampler failed: {exc!r}"] += 1


def wait_summary(waits: Counter[str], top: int = 6) -> str:
    total = sum(waits.values())
    if not total:
        return "no samples"
    return ", ".join(f"{what} {100 * n / total:.0f}%" for what, n in waits.most_common(top))


async def audit(database_url: str) -> tuple[int, list]:
    settings = Settings(database_url=database_url, db_pool_size=1)
    engine = create_engine(settings)
    try:
        meter = build_meter(settings, engine)
        async with create_sessionmaker(engine).begin() as session:
            count, drift = await BillingService(session, meter.plans).audit()
            return count, list(drift)
    finally:
        await engine.dispose()


# -- output ----------------------------------------------------------------------------------

HEADER = (
    f"{'scenario':<9} {'conc':>4} {'pool':>4} {'pairs/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'errors':>6} {'py cpu':>7} {'pg cpu':>7} {'host':>6} {'py ms/pair':>10} {'pg ms/pair':>10}"
)


def row(r: Result) -> str:
    def per_pair(cpu: float | None) -> str:
        return "n/a" if cpu is None or not r.latencies else f"{1000 * cpu / len(r.latencies):.2f}"

    def pct_core(cpu: float | None) -> str:
        return "n/a" if cpu is None else f"{100 * cpu / r.seconds:.0f}%"

    return (
        f"{r.scenario:<9} {r.concurrency:>4} {r.pool:>4} {r.rate:>9.0f} {r.pct(0.50):>8.2f} "
        f"{r.pct(0.99):>8.2f} {sum(r.errors.values()):>6} {pct_core(r.py_cpu):>7} {pct_core(r.pg_cpu):>7} "
        f"{pct_core(r.host_cpu):>6} {per_pair(r.py_cpu):>10} {per_pair(r.pg_cpu):>10}"
    )


def pools_for(concurrency: int, also_default: bool) -> list[int]:
    """The pool the brief asks for (max(concurrency, 15)), and the default 15 when it clearly bounds."""
    full = max(concurrency, DEFAULT_POOL)
    pools = [full]
    if also_default and concurrency >= 2 * DEFAULT_POOL:
        pools.insert(0, DEFAULT_POOL)
    return pools


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (after 1 s warm-up)")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated worker counts")
    p.add_argument(
        "--wallets", default="hot,many",
        help="scenarios: hot (one wallet), many (one per worker), extend (extend calls, hot wallet)",
    )
    p.add_argument(
        "--baseline", metavar="REF",
        help="also run every scenario with the code of this git ref, side by side (e.g. main)",
    )
    p.add_argument("--rounds", type=int, default=1, help="with --baseline: runs per side (medians)")
    p.add_argument(
        "--admin-url", default=DEFAULT_ADMIN_URL, help="maintenance DB used to create/drop the bench DB"
    )
    p.add_argument(
        "--no-default-pool", action="store_true",
        help=f"do not also measure the default pool ({DEFAULT_POOL}) when concurrency >= {2 * DEFAULT_POOL}",
    )
    p.add_argument(
        "--members", action="store_true",
        help="one user per worker (team daily request limit raised) instead of user_id=None",
    )
    p.add_argument(
        "--synchronous-commit", choices=["on", "off", "local", "remote_write", "remote_apply"],
        help="EXPERIMENT: session-level SET synchronous_commit on the bench connections (default: server's)",
    )
    p.add_argument(
        "--waits", action="store_true",
        help="sample pg_stat_activity every 10 ms during each run and print where backends wait",
    )
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.wallets = [w.strip() for w in args.wallets.split(",") if w.strip()]
    if any(c < 1 for c in args.concurrency) or not args.concurrency:
        p.error("--concurrency needs positive integers")
    if not set(args.wallets) <= {"hot", "many", "extend"} or not args.wallets:
        p.error("--wallets takes hot, many and/or extend")
    return args


async def bench(args: argparse.Namespace, database_url: str) -> int:
    session_settings = {"synchronous_commit": args.synchronous_commit} if args.synchronous_commit else {}
    slots = max(args.concurrency)
    fixture = await make_fixture(database_url, slots, args.members)
    print(f"wallets: 1 hot + {slots} single-worker wallets, plan {PLAN!r}, "
          f"grant {GRANT} micro-credits each")
    if args.members:
        print("limits: one member per worker (user_id set); "
              "team daily request limit raised to 10^9 in memory")
    else:
        print("limits: user_id=None -> no per-member request counter or member cap; team plan has no daily "
              "credit cap (admit takes no usage counters)")
    print(f"pair: admit(price={PRICE!r}, max_usage={MAX_USAGE}) + capture(usage={USAGE})")
    if session_settings:
        print(f"EXPERIMENT: session-level {session_settings} on bench connections (not the server default)")
    print()
    print("statements per call through SQLAlchemy (steady state, prepared statements cached per connection):")
    for line in await statement_census(database_url, fixture, args.members):
        print("  " + line)
    print("  (on PostgreSQL the meter calls lipika_admit_rules_many / lipika_settle_many on the asyncpg driver:")
    print("   one round trip per batch of concurrent calls, plus one flush wait per admission batch;")
    print("   SQLAlchemy's events do not see them, hence the counts above)")
    print()
    measure_pg_cpu = is_local(args.admin_url) and postgres_cpu_seconds() is not None
    print(f"measured {args.seconds:g} s per run after a {WARMUP_SECONDS:g} s warm-up; cpu = % of one core "
          f"({'pg = the bench database backends' if measure_pg_cpu else 'pg cpu not measurable'}; "
          f"host = every process on the machine, {os.cpu_count()} cores = {100 * os.cpu_count()}%);")
    print("py/pg ms/pair = CPU ms per pair in this process / in the bench backends (steadier than pairs/s "
          "on a busy host)")
    print(HEADER, flush=True)
    results = []
    for scenario in args.wallets:
        for concurrency in args.concurrency:
            for pool in pools_for(concurrency, not args.no_default_pool):
                r = await run_scenario(
                    database_url, fixture, scenario, concurrency, pool, args.seconds,
                    members=args.members, session_settings=session_settings,
                    measure_pg_cpu=measure_pg_cpu,
                    admin_url=args.admin_url, sample_waits=args.waits,
                )
                results.append(r)
                print(row(r), flush=True)
                if args.waits:
                    print(f"          waits: {wait_summary(r.waits)}", flush=True)
    errors = Counter()
    for r in results:
        errors.update(r.errors)
    for message, n in errors.most_common(5):
        print(f"  error x{n}: {message}")
    count, drift = await audit(database_url)
    print()
    print(f"audit: {count} wallets, drift {len(drift)}")
    for d in drift[:10]:
        print(f"  drift: {dict(d._mapping)}")
    goal = [r for r in results if r.scenario == "hot" and r.concurrency == 16]
    if goal:
        best = max(goal, key=lambda r: r.rate)
        verdict = "met" if best.rate >= 1000 and not drift else "NOT met"
        if session_settings:
            verdict += f" under the {session_settings} experiment (does not count)"
        print(f"goal (>= 1000 pairs/s, hot wallet, concurrency 16, zero drift): {verdict} "
              f"({best.rate:.0f} pairs/s)")
    return 1 if drift else 0


# -- side by side with another ref -----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def export_ref(ref: str, into: Path) -> Path:
    """The ref's src/ and bench/ in a directory of their own (git archive: no checkout touched)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src", "bench"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


@dataclass
class ChildRun:
    rate: float | None = None  # pairs (or extends) per second
    cpu_ms: float | None = None  # CPU ms per pair, this process and the bench backends together
    failure: str = ""


def child_run(root: Path, scenario: str, concurrency: int, args: argparse.Namespace) -> ChildRun:
    """One scenario in a process of its own, with `root`'s code."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    command = [
        sys.executable, str(root / "bench" / "ledger.py"), "--wallets", scenario,
        "--concurrency", str(concurrency), "--seconds", f"{args.seconds:g}", "--no-default-pool",
        "--admin-url", args.admin_url,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if "drift 0" not in done.stdout:
        return ChildRun(failure=f"failed ({done.returncode}) or drift: "
                                f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[0] == scenario and fields[1] == str(concurrency):
            try:
                cpu = float(fields[-2]) + float(fields[-1])
            except ValueError:
                cpu = None
            return ChildRun(float(fields[3]), cpu)
    return ChildRun(failure="no result row")


def median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


def side_by_side(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="lipika-bench-") as tmp:
        baseline = export_ref(args.baseline, Path(tmp))
        print(f"side by side: {args.baseline} against this checkout ({ROOT}); {args.rounds} "
              f"round(s) of {args.seconds:g} s runs after a {WARMUP_SECONDS:g} s warm-up, one "
              "process and database per run, alternating which runs first; medians; cpu = "
              "py + pg CPU ms per pair", flush=True)
        base = args.baseline[:10]
        print(f"{'scenario':<9} {'conc':>4} {base + ' /s':>14} {'this /s':>9} {'change':>8} "
              f"{base + ' cpu':>14} {'this cpu':>9} {'change':>8}", flush=True)
        failed = 0
        for n, (scenario, concurrency) in enumerate(
            (s, c) for s in args.wallets for c in args.concurrency
        ):
            runs: dict[str, list[ChildRun]] = {"base": [], "this": []}
            for r in range(args.rounds):
                order = [("base", baseline), ("this", ROOT)]
                if scenario == "extend":
                    order = order[1:]  # the baseline may have no Meter.extend
                elif (n + r) % 2:
                    order.reverse()
                for label, root in order:
                    runs[label].append(child_run(root, scenario, concurrency, args))
            for label in runs:
                for run in runs[label]:
                    if run.failure:
                        failed += 1
                        print(f"  {label} {scenario} {concurrency}: {run.failure}", flush=True)
            cells = []
            for metric in ("rate", "cpu_ms"):
                b = median([getattr(x, metric) for x in runs["base"] if getattr(x, metric)])
                t = median([getattr(x, metric) for x in runs["this"] if getattr(x, metric)])
                change = f"{100 * (t / b - 1):+.1f}%" if b and t else ""
                fmt = "{:.0f}" if metric == "rate" else "{:.2f}"
                cells += [fmt.format(b) if b else "n/a", fmt.format(t) if t else "n/a", change]
            print(f"{scenario:<9} {concurrency:>4} {cells[0]:>14} {cells[1]:>9} {cells[2]:>8} "
                  f"{cells[3]:>14} {cells[4]:>9} {cells[5]:>8}", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline:
        return side_by_side(args)
    # SIGTERM takes the same path as Ctrl-C, so the finally below drops the database.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    for line in machine_facts(args.admin_url):
        print(line)
    name, url = create_database(args.admin_url)
    print(f"database: {name} (dropped at exit)", flush=True)
    try:
        upgrade(Settings(database_url=url).app_db_url)  # sync; before the event loop starts
        return asyncio.run(bench(args, url))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        drop_database(args.admin_url, name)
        print(f"dropped {name}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
