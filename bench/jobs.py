"""Jobs without a broker, at scale: N concurrent video jobs in one process (the demo video
provider, which any process can poll, standing in for a fake provider), then the death of that
process and the adoption of all its jobs by another.

    .venv/bin/python bench/jobs.py [--jobs 1000] [--job-seconds 60] [--poll 5] [--lease 15]
                                   [--reconcile 5] [--backend sqlite|postgres]

Prints: the time to submit N jobs; CPU seconds per job-minute of the running process; database
statements per poll round while the jobs run (the lease heartbeat renews every lease in one
statement; polls themselves touch no table); the event loop's worst lag (every poll round of
N jobs must fit in its interval on one core); and the time from the process's death until every
job was adopted (goal: within one lease plus one reconcile period), then charged once each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import event, func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lipika import migrate  # noqa: E402
from lipika.auth.dependencies import Principal  # noqa: E402
from lipika.billing.meter import build_meter  # noqa: E402
from lipika.billing.models import EntryKind, Hold, HoldStatus  # noqa: E402
from lipika.billing.service import BillingService  # noqa: E402
from lipika.config import Settings  # noqa: E402
from lipika.db import create_engine, create_sessionmaker  # noqa: E402
from lipika.jobs.models import LIVE_STATUSES, Job, JobStatus  # noqa: E402
from lipika.jobs.service import JobService  # noqa: E402
from lipika.jobs.setup import build_runner  # noqa: E402
from lipika.kit.tasks import cancel_and_wait  # noqa: E402
from lipika.providers.registry import build_media  # noqa: E402
from lipika.redis import create_redis  # noqa: E402
from lipika.workspaces.models import Role, Workspace, WorkspaceKind  # noqa: E402

PG_ADMIN = os.environ.get("LIPIKA_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def lag_meter(worst: list[float], period: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(period)
        worst[0] = max(worst[0], loop.time() - started - period)


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lipika-bench-jobs-"))
    dropped = None
    if args.backend == "postgres":
        import psycopg

        name = f"lipika_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        dropped = name
    else:
        database_url = f"sqlite:///{tmp / 'app.db'}"
    settings = Settings(
        data_dir=tmp,
        database_url=database_url,
        redis_url=os.environ.get("LIPIKA_BENCH_REDIS_URL") or None,
        redis_key_prefix=f"bench-{uuid.uuid4().hex[:6]}",
        job_lease_seconds=args.lease,
        job_poll_seconds=args.poll,
        demo_job_seconds=args.job_seconds,
        video_job_deadline_seconds=args.job_seconds * 10,
        db_pool_size=10,
        _env_file=None,
    )
    try:
        await asyncio.to_thread(migrate.upgrade, settings.app_db_url)
        await run(settings, args)
    finally:
        if dropped:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')


async def run(settings: Settings, args: argparse.Namespace) -> None:
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    redis = create_redis(settings)
    meter = build_meter(settings, engine)
    statements = [0]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*_: object) -> None:
        statements[0] += 1

    async with sessionmaker.begin() as session:
        workspace = Workspace(name="bench", kind=WorkspaceKind.TEAM)
        session.add(workspace)
        await session.flush()
        billing = BillingService(session, meter.plans)
        await billing.open_wallet(workspace.id)
        await billing.assign_plan(workspace.id, "team")
        await billing.post(
            workspace.id, EntryKind.ADJUSTMENT, 10**15, "bench:grant", reason="bench"
        )
    me = Principal(None, workspace.id, WorkspaceKind.TEAM, Role.OWNER)  # type: ignore[arg-type]

    first = build_runner(settings, sessionmaker, meter, redis, build_media(settings))
    first.start()
    service = JobService(first)
    worst = [0.0]
    lagger = asyncio.create_task(lag_meter(worst))
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; backend {args.backend}")
    started = time.perf_counter()
    for _ in range(args.jobs):
        await service.submit(me, "video", {"prompt": "bench", "seconds": 8}, None)
    print(f"submitted {args.jobs} jobs in {time.perf_counter() - started:.2f} s")

    # Steady state: the jobs poll while running.
    await asyncio.sleep(args.poll)  # every job has stored its operation id and polled once
    worst[0] = 0.0
    window = min(args.job_seconds / 2, 6 * args.poll)
    statements[0], cpu0, wall0 = 0, cpu(), time.perf_counter()
    await asyncio.sleep(window)
    spent, wall, counted = cpu() - cpu0, time.perf_counter() - wall0, statements[0]
    rounds = wall / args.poll
    job_minutes = args.jobs * wall / 60
    print(
        f"steady {wall:.1f} s: CPU {spent:.2f} s = {1000 * spent / job_minutes:.2f} ms per "
        f"job-minute; {counted} DB statements = {counted / rounds:.2f} per poll round of "
        f"{args.jobs} jobs; worst event-loop lag {1000 * worst[0]:.0f} ms (interval "
        f"{args.poll:g} s)"
    )

    # The process dies: its tasks stop, its leases stay (as after SIGKILL).
    for task in [*(live.task for live in first._live.values()), *first._loops]:  # noqa: SLF001
        await cancel_and_wait(task)
    died = time.perf_counter()
    meter.resolvers.unregister("job")  # the second process registers its own
    second = build_runner(settings, sessionmaker, meter, redis, build_media(settings))
    second.start()
    adopted = 0
    while True:
        await asyncio.sleep(args.reconcile)
        adopted += (await second.adopt()).adopted
        async with sessionmaker() as session:
            orphans = await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status.in_(LIVE_STATUSES), Job.lease_owner != second.owner)
            )
        if not orphans:
            break
    took = time.perf_counter() - died
    print(
        f"adopted all {adopted} live jobs {took:.2f} s after the death (lease {args.lease:g} s + "
        f"reconcile {args.reconcile:g} s = {args.lease + args.reconcile:g} s)"
    )
    while True:
        async with sessionmaker() as session:
            live = await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status.in_(LIVE_STATUSES) | Job.charged.is_(None))
            )
        if not live:
            break
        await asyncio.sleep(1)
    async with sessionmaker() as session:
        captured = await session.scalar(
            select(func.count()).select_from(Hold).where(Hold.status == HoldStatus.CAPTURED)
        )
        succeeded = await session.scalar(
            select(func.count()).select_from(Job).where(Job.status == JobStatus.SUCCEEDED)
        )
        drift = list(await BillingService(session, meter.plans).audit())[1]
    print(
        f"{succeeded} of {args.jobs} jobs succeeded; {captured} holds captured; "
        f"audit drift: {list(drift)}"
    )
    lagger.cancel()
    await second.aclose()
    await first.aclose()
    await meter.aclose()
    await redis.aclose()
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--job-seconds", type=float, default=60)
    parser.add_argument("--poll", type=float, default=5)
    parser.add_argument("--lease", type=float, default=15)
    parser.add_argument("--reconcile", type=float, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    asyncio.run(main(parser.parse_args()))
