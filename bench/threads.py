#!/usr/bin/env python
"""Agent thread benchmark: streamed thread runs on one pinned server, side by side with LiteLLM.

    cp -r ../shared/peerbench /tmp/ && /tmp/peerbench/setup.sh      # once
    .venv/bin/python bench/threads.py [--conc 200] [--reqs 2] [--ramp 1] [--no-litellm] [--no-chat]
        [--profile /tmp/threads.txt [--profile-seconds 10]] [--backend postgres|sqlite]
        [--env LIPIKA_NAME=value ...]
    .venv/bin/python bench/threads.py --show-profile /tmp/threads.txt   # summarise a py-spy file

Starts peerbench's fake OpenAI upstream (200 tokens at 20 ms, first token at 100 ms) pinned to
CPU 0 and `lipika serve` (one uvicorn worker) pinned to CPU 1, with the OpenAI provider pointed
at the upstream. This process, which runs the load clients, stays on CPU 0. The database,
price book, plan, account and API key come from bench/stream.py's setup. On PostgreSQL the
agent's checkpoints go to the same throwaway database, dropped at the end (also on errors).

Points, all at the same C (workers) x R (messages each), first requests ramped over --ramp s:

1. floor: peerbench's loadgen.py straight at the upstream (its own TTFT, ~100 ms).
2. thread stream: C threads made with `POST /v1/threads` (one per worker, because a thread
   takes one message at a time), then R messages each to `POST /v1/threads/{id}/messages`
   with `stream: true`. TTFT = send -> first `token` event with text. An error is a non-200
   answer, an `error` event, a stream without `done`, or a token count other than 200.
3. chat completions (reference, skip with --no-chat): loadgen.py at our `/v1/chat/completions`.
4. LiteLLM (skip with --no-litellm): peerbench's `bench.py --targets litellm` at the same C,
   after our processes are stopped (it starts its own upstream on the same port).

For each point: TTFT p50/p95, added p50/p95 (the point's percentile minus the floor's), server
CPU seconds per 1,000 chunks (utime+stime of the process tree, /proc, over the point), peak RSS
and errors. Then the ledger is audited as bench/stream.py does: exit 1 on drift, an open hold
or any error on our paths. Everything lands in /tmp/peerbench/results/<--out>.

With --profile FILE, py-spy records the server (200 Hz, raw) during the thread point; then the
top self and inclusive frames, our own functions and the CPU share of each package are printed.
py-spy slows the server: take a profiled run's other numbers with a grain of salt.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import aiohttp
import orjson
from stream import (  # bench/stream.py: the same database, price book, plan and account
    MODEL,
    check_books,
    create_account,
    drop_database,
    environment,
    settings_for,
)

UP_PORT = 18000
UPSTREAM = f"http://127.0.0.1:{UP_PORT}"
TOKENS = 200
UPSTREAM_ENV = {
    "FAKE_TOKENS": str(TOKENS),
    "FAKE_TOKEN_DELAY_MS": "20",
    "FAKE_TTFT_MS": "100",
    "FAKE_PORT": str(UP_PORT),
    "FAKE_HOST": "127.0.0.1",
}
PROMPT = "Say something."
WARMUP = 10
BIN = Path(sys.executable).parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peerbench", type=Path, default=Path("/tmp/peerbench"))
    parser.add_argument("--conc", type=int, default=200, help="concurrent workers (C)")
    parser.add_argument("--reqs", type=int, default=2, help="messages per worker (R)")
    parser.add_argument("--ramp", type=float, default=1.0, help="first requests spread over (s)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument("--no-chat", action="store_true", help="skip our /v1/chat/completions")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the thread point")
    parser.add_argument("--profile-seconds", type=float, default=10)
    parser.add_argument("--show-profile", type=Path, help="only summarise this py-spy raw file")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--env", action="append", default=[], help="LIPIKA_NAME=value for the server"
    )
    parser.add_argument("--port", type=int, default=18003)
    parser.add_argument("--req-timeout", type=float, default=180)
    parser.add_argument("--max-time", type=float, default=300, help="deadline per point (s)")
    parser.add_argument("--out", default="", help="results/<out> (default threads-<time>)")
    return parser.parse_args()


def load_peerbench(root: Path) -> ModuleType:
    """peerbench's bench.py, for its process control (start/stop by PID, pinning, logs) and
    its loadgen runner; it puts loadgen.py (the /proc helpers) on the path."""
    spec = importlib.util.spec_from_file_location("peerbench", root / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ thread stream client


class ThreadStream:
    """Parses one thread run's SSE frames: counts token events and notes the terminal one."""

    def __init__(self) -> None:
        self.buf = b""
        self.tokens = 0
        self.first: float | None = None
        self.done = False
        self.error: str | None = None

    def feed(self, data: bytes, now: float) -> None:
        frames = (self.buf + data).split(b"\n\n")
        self.buf = frames.pop()
        for frame in frames:
            for line in frame.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue  # heartbeat comments
                event = orjson.loads(line[5:])
                kind = event.get("type")
                if kind == "token" and event.get("text"):
                    self.tokens += 1
                    if self.first is None:
                        self.first = now
                elif kind == "done":
                    self.done = True
                elif kind == "error":
                    self.error = "error:" + str((event.get("error") or {}).get("code"))


async def send_message(
    http: aiohttp.ClientSession, url: str, body: bytes, timeout: float
) -> dict[str, Any]:
    """One streamed message; a record with its TTFT (s) and its error kind (None when ok)."""
    stream = ThreadStream()
    start = time.perf_counter()
    err, msg = None, None
    try:
        async with http.post(
            url, data=body, timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        ) as resp:
            if resp.status != 200:
                err, msg = f"http_{resp.status}", (await resp.text())[:200]
            else:
                async for data in resp.content.iter_any():
                    stream.feed(data, time.perf_counter())
    except Exception as exc:  # noqa: BLE001 - counted as an error of its kind
        err, msg = type(exc).__name__, str(exc)[:200]
    end = time.perf_counter()
    if err is None:
        if stream.error:
            err = stream.error
        elif not stream.done:
            err = "no_done"
        elif stream.tokens != TOKENS:
            err = "short_stream"
    return {
        "start": start,
        "end": end,
        "err": err,
        "msg": msg,
        "tokens": stream.tokens,
        "ttft": None if stream.first is None else stream.first - start,
    }


async def make_threads(http: aiohttp.ClientSession, base: str, count: int) -> list[str]:
    async def one(i: int) -> str:
        async with http.post(f"{base}/v1/threads", json={"title": f"bench {i}"}) as resp:
            if resp.status != 201:
                raise RuntimeError(f"POST /v1/threads: {resp.status} {await resp.text()}")
            return (await resp.json())["id"]

    ids = []
    for offset in range(0, count, 50):  # not part of the measurement: a few at a time
        ids += await asyncio.gather(*(one(i) for i in range(offset, min(count, offset + 50))))
    return ids


class Watch:
    """CPU seconds and peak RSS of a process tree (and of PostgreSQL + Redis, which are not
    pinned and share both cores), per-core busy %, over one point."""

    def __init__(self, lg: ModuleType, pid: int) -> None:
        self.lg, self.pid = lg, pid
        roots = {name: _root(name) for name in ("postgres", "redis-server")}
        self.others = {name: root for name, root in roots.items() if root is not None}

    async def __aenter__(self) -> Watch:
        self.cpu0 = self.lg.cpu_seconds(self.pid)
        self.others0 = {n: self.lg.cpu_seconds(p) for n, p in self.others.items()}
        self.ticks0 = self.lg.core_ticks()
        self.rss_peak = self.lg.rss_mb(self.pid)
        self.sampling = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            self.rss_peak = max(self.rss_peak, self.lg.rss_mb(self.pid))
            await asyncio.sleep(0.2)

    async def __aexit__(self, *exc: object) -> None:
        self.sampling.cancel()
        self.cpu_s = self.lg.cpu_seconds(self.pid) - self.cpu0
        self.others_s = {
            n: self.lg.cpu_seconds(p) - self.others0[n] for n, p in self.others.items()
        }
        self.cores = [
            round(100.0 * ((a1 - a0) - (i1 - i0)) / (a1 - a0), 1) if a1 > a0 else None
            for (a0, i0), (a1, i1) in zip(self.ticks0, self.lg.core_ticks(), strict=True)
        ]


def _root(comm: str) -> int | None:
    """The oldest process named `comm` (the postmaster, the Redis server), if any."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                found.append(int(pid))
        except OSError:
            pass
    return min(found) if found else None


async def thread_point(
    args: argparse.Namespace, lg: ModuleType, key: str, server_pid: int
) -> dict[str, Any]:
    """Warm-up, then C workers x R messages, each worker on its own thread."""
    base = f"http://127.0.0.1:{args.port}"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = orjson.dumps({"content": PROMPT, "model": MODEL, "stream": True})
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, auto_decompress=False
    ) as http:
        threads = await make_threads(http, base, args.conc + WARMUP)
        warm = await asyncio.gather(
            *(
                send_message(http, f"{base}/v1/threads/{t}/messages", body, args.req_timeout)
                for t in threads[args.conc :]
            )
        )
        if bad := [r for r in warm if r["err"]]:
            raise RuntimeError(f"thread warm-up failed: {bad[:3]}")
        await asyncio.sleep(3)  # settle, as peerbench does

        records: list[dict[str, Any]] = []

        async def worker(i: int, thread_id: str) -> None:
            await asyncio.sleep(args.ramp * i / args.conc)
            url = f"{base}/v1/threads/{thread_id}/messages"
            for _ in range(args.reqs):
                records.append(await send_message(http, url, body, args.req_timeout))

        profiler = None
        async with Watch(lg, server_pid) as watch:
            if args.profile:
                profiler = asyncio.create_task(profile(args, server_pid))
            workers = [
                asyncio.create_task(worker(i, t)) for i, t in enumerate(threads[: args.conc])
            ]
            _, late = await asyncio.wait(workers, timeout=args.max_time)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if profiler is not None:
            await profiler
    return point_result(args, records, watch)


async def profile(args: argparse.Namespace, pid: int) -> None:
    """py-spy on the server once the ramp is over (it inherits this process's CPU 0)."""
    await asyncio.sleep(args.ramp + 0.5)
    spy = await asyncio.create_subprocess_exec(
        str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration",
        str(int(args.profile_seconds)), "--rate", "200", "--format", "raw", "--full-filenames",
        "-o", str(args.profile), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await spy.communicate()
    if spy.returncode != 0:
        print("py-spy failed:", err.decode()[-500:])


def point_result(
    args: argparse.Namespace, records: list[dict[str, Any]], watch: Watch
) -> dict[str, Any]:
    """The thread point in loadgen.py's result shape, so one table row fits every point."""
    lg = watch.lg
    ok = [r for r in records if r["err"] is None]
    kinds = Counter(r["err"] for r in records if r["err"])
    missing = args.conc * args.reqs - len(records)
    if missing:
        kinds["not_finished_by_deadline"] = missing
    samples: dict[str, list[Any]] = {}
    for r in records:
        if r["err"] and len(samples.setdefault(r["err"], [])) < 3:
            samples[r["err"]].append({"msg": r["msg"], "tokens_before_error": r["tokens"]})
    tokens = sum(r["tokens"] for r in records)
    wall = max(r["end"] for r in records) - min(r["start"] for r in records) if records else 0
    per_1k = 1000.0 / tokens if tokens else None
    return {
        "label": "threads",
        "concurrency": args.conc,
        "requests_per_worker": args.reqs,
        "requests": len(records) + missing,
        "ok": len(ok),
        "errors": len(records) + missing - len(ok),
        "error_kinds": dict(kinds),
        "error_samples": samples,
        "ttft_ms": lg.summary([r["ttft"] * 1000 for r in ok if r["ttft"] is not None]),
        "total_ms": lg.summary([(r["end"] - r["start"]) * 1000 for r in ok]),
        "tokens_total": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall if wall else None,
        "cores_busy_pct": watch.cores,
        "watched": {
            "gateway": {
                "cpu_s": watch.cpu_s,
                "cpu_s_per_1k_chunks": watch.cpu_s * per_1k if per_1k else None,
                "cpu_util_pct": 100.0 * watch.cpu_s / wall if wall else None,
                "rss_peak_mb": watch.rss_peak,
            },
            **{
                name: {"cpu_s": cpu, "cpu_s_per_1k_chunks": cpu * per_1k if per_1k else None}
                for name, cpu in watch.others_s.items()
            },
        },
    }


# ------------------------------------------------------------------ the run


def measure_ours(
    args: argparse.Namespace,
    pb: ModuleType,
    lg: ModuleType,
    env: dict[str, str],
    key: str,
    outdir: Path,
) -> dict[str, dict[str, Any] | None]:
    """Floor, thread stream and chat completions, on one upstream and one server."""
    logdir, pidfile = str(outdir / "logs"), str(outdir / "pids.txt")
    upstream_py = [pb.HARNESS_PY, str(args.peerbench / "fake_upstream.py")]
    up = pb.start("upstream", upstream_py, UPSTREAM_ENV, 0, logdir, pidfile)
    pb.wait_port(UP_PORT, 30, up)
    serve = [str(BIN / "lipika"), "serve", "--host", "127.0.0.1", "--port", str(args.port)]
    server_env = {**env, "LIPIKA_OPENAI_BASE_URL": f"{UPSTREAM}/v1"}
    server = pb.start("lipika", serve, server_env, 1, logdir, pidfile)
    pb.wait_port(args.port, 120, server)
    loadgen = SimpleNamespace(max_time=args.max_time, req_timeout=args.req_timeout, http="aiohttp")

    def run_loadgen(label: str, url: str, api_key: str, watch: dict[str, int]) -> Any:
        """A warm-up of 10 streams, then the point (None if loadgen failed)."""
        warm = pb.run_loadgen(
            loadgen, url, WARMUP, 1, TOKENS, {}, "warmup", str(outdir / "logs" / f"warmup_{label}.json"),
            api_key, MODEL, 0.0, 0,
        )  # fmt: skip
        if warm is None or warm["errors"]:
            raise RuntimeError(f"{label} warm-up failed: {warm and warm['error_samples']}")
        time.sleep(3)  # settle, as peerbench does
        out = str(outdir / f"{label}_c{args.conc}.json")
        return pb.run_loadgen(
            loadgen, url, args.conc, args.reqs, TOKENS, watch, label, out, api_key, MODEL,
            args.ramp, 0,
        )  # fmt: skip

    results: dict[str, dict[str, Any] | None] = {}
    pb.log(f"floor: loadgen -> upstream, C={args.conc} R={args.reqs}")
    results["floor"] = run_loadgen(
        "floor", f"{UPSTREAM}/v1/chat/completions", "sk-bench", {"upstream": up.pid}
    )
    pb.log(f"thread stream: C={args.conc} R={args.reqs}")
    results["threads"] = run_async(thread_point(args, lg, key, server.pid))
    (outdir / f"threads_c{args.conc}.json").write_text(json.dumps(results["threads"], indent=1))
    if not args.no_chat:
        pb.log(f"chat completions: C={args.conc} R={args.reqs}")
        chat = f"http://127.0.0.1:{args.port}/v1/chat/completions"
        results["chat"] = run_loadgen(
            "chat", chat, key, {"upstream": up.pid, "gateway": server.pid}
        )
    pb.stop(server, "lipika")
    pb.stop(up, "upstream")
    return results


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_litellm(args: argparse.Namespace, outdir: Path) -> tuple[dict[str, Any] | None, str]:
    """peerbench's own LiteLLM point at the same C and R; (its result, LiteLLM's version)."""
    command = [
        str(args.peerbench / ".venv-harness" / "bin" / "python"), "bench.py",
        "--targets", "litellm", "--conc", str(args.conc), "--reqs", f"{args.conc}:{args.reqs}",
        "--repeats", "1", "--phases", "stream", "--ramp", str(args.ramp),
        "--out", str(outdir.relative_to(args.peerbench)),
    ]  # fmt: skip
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=args.peerbench)
    point = outdir / f"stream_litellm_c{args.conc}_rep1.json"
    result = json.loads(point.read_text()) if point.exists() else None
    if result is not None and result.get("failed"):
        result = None
    meta = json.loads((outdir / "meta.json").read_text()) if (outdir / "meta.json").exists() else {}
    return result, (meta.get("gateway_venv") or {}).get("litellm") or "?"


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# ------------------------------------------------------------------ the report


def row(name: str, result: dict[str, Any] | None, floor: dict[str, Any] | None) -> str:
    if result is None:
        return f"| {name} | failed | - | - | - | - | - | - |"
    ttft = result.get("ttft_ms") or {}
    base = (floor or {}).get("ttft_ms") or {}
    gateway = result["watched"].get("gateway")

    def num(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    def added(q: str) -> float | None:
        if result is floor or ttft.get(q) is None or base.get(q) is None:
            return None
        return ttft[q] - base[q]

    errors = result["errors"] + result.get("not_started", 0)
    kinds = result["error_kinds"]
    return " | ".join([
        f"| {name}",
        f"{result['ok']}/{result['requests'] + result.get('not_started', 0)}",
        f"{num(ttft.get('p50'))} / {num(ttft.get('p95'))}",
        f"{num(added('p50'))} / {num(added('p95'))}",
        num(gateway and gateway["cpu_s_per_1k_chunks"], 3),
        num(gateway and gateway["cpu_util_pct"], 0),
        num(gateway and gateway["rss_peak_mb"], 0),
        f"{errors}" + (f" {kinds}" if kinds else "") + " |",
    ])  # fmt: skip


def report(args: argparse.Namespace, results: dict[str, Any], litellm_version: str) -> None:
    floor, threads = results.get("floor"), results.get("threads")
    litellm, chat = results.get("litellm"), results.get("chat")
    print(
        f"\nC={args.conc} workers x R={args.reqs} streams of {TOKENS} tokens at 20 ms (first "
        f"token at 100 ms), ramp {args.ramp:g} s; servers pinned to CPU 1, upstream and clients "
        "to CPU 0. added = the path's percentile minus the floor's (this run's loadgen -> upstream)."
    )
    print(
        "| path | ok/total | TTFT p50 / p95 ms | added p50 / p95 ms | server CPU s / 1k chunks "
        "| server CPU % | RSS peak MB | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(row("floor: peerbench loadgen -> fake upstream", floor, floor))
    print(row("lipika thread stream (/v1/threads/{id}/messages)", threads, floor))
    if chat is not None or not args.no_chat:
        print(row("lipika /v1/chat/completions (reference)", chat, floor))
    if litellm is not None or not args.no_litellm:
        print(row(f"LiteLLM {litellm_version}, 1 worker (peerbench)", litellm, floor))
    if threads is None:
        return
    watched = threads["watched"]
    others = ", ".join(
        f"{name} {w['cpu_s']:.1f} s ({w['cpu_s_per_1k_chunks'] or 0:.3f} s / 1k)"
        for name, w in watched.items()
        if name != "gateway"
    )
    stream = (threads.get("total_ms") or {}).get("p50")
    print(
        f"\nthread point: {threads['tokens_total']} token events in {threads['wall_s']:.1f} s "
        f"({threads['tokens_per_s'] or 0:.0f}/s), stream p50 {(stream or 0) / 1000:.2f} s, "
        f"server CPU {watched['gateway']['cpu_s']:.1f} s, unpinned {others or '-'}, "
        f"cores busy % {threads['cores_busy_pct']}"
    )
    ttft, base = threads.get("ttft_ms") or {}, (floor or {}).get("ttft_ms") or {}
    added95 = ttft["p95"] - base["p95"] if ttft and base else None
    ours = watched["gateway"]["cpu_s_per_1k_chunks"]
    theirs = litellm and litellm["watched"]["gateway"]["cpu_s_per_1k_chunks"]
    print(f"goal (issue: at C=200 one pinned process; this run C={args.conc}):")
    if added95 is not None:
        print(
            f"  added TTFT p95 < 250 ms: {added95:.0f} ms -> {'met' if added95 < 250 else 'MISSED'}"
        )
    print(f"  zero errors: {threads['errors']} -> {'met' if not threads['errors'] else 'MISSED'}")
    if ours and theirs:
        ratio = ours / theirs
        verdict = "met" if ratio <= 0.5 else "MISSED"
        print(f"  CPU per chunk <= half of LiteLLM's: {ours:.3f} vs {theirs:.3f} s / 1k "
              f"({ratio:.2f}x) -> {verdict}")  # fmt: skip
    for name, result in (("thread stream", threads), ("chat", chat), ("LiteLLM", litellm)):
        if result and result.get("error_samples"):
            print(f"{name} error samples: {json.dumps(result['error_samples'])[:600]}")


LOOP = "Runner.run (asyncio/runners.py)"
# Charged to their caller, like the standard library, in the by-package view.
HELPERS = {"pydantic", "pydantic_core", "typing_extensions", "anyio", "sniffio"}


def print_profile(path: Path, top: int = 15) -> None:
    """Top frames of a py-spy raw profile (lines: `root;...;leaf count`), merged across line
    numbers: self, inclusive, our own functions, and by package, where time in the standard
    library and in helpers (pydantic, typing_extensions...) goes to the package that called
    them. Stacks are cut at the event loop (`Runner.run`; SQLAlchemy's greenlets show as stacks
    of their own). Samples of idle thread-pool workers are left out: py-spy counts a thread
    blocked in `queue.get` as active."""
    own, inclusive = Counter[str](), Counter[str]()
    packages: dict[str, Counter[str]] = {}
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(raw) for raw in stack.split(";")]
        names = [name for name, _ in frames]
        if names[-1] == "_worker (concurrent/futures/thread.py)":
            idle += int(count)
            continue
        if LOOP in names:  # the CLI and uvicorn frames under it are the same in every sample
            frames = frames[names.index(LOOP) :]
            names = names[names.index(LOOP) :]
        total += int(count)
        own[names[-1]] += int(count)
        for name in set(names):
            inclusive[name] += int(count)
        owner = next((name for name, helper in reversed(frames) if not helper), LOOP)
        package = "event loop" if owner == LOOP else _package(owner)
        packages.setdefault(package, Counter())[owner] += int(count)
    if not total:
        print(f"profile {path}: no samples")
        return
    print(f"\nprofile {path}: {total} samples on CPU ({idle} idle thread-pool samples left out)")
    ours = Counter({name: n for name, n in inclusive.items() if "(lipika/" in name})
    for title, counts in (("self", own), ("inclusive", inclusive), ("our functions", ours)):
        print(f"top {title}:")
        for name, n in counts.most_common(top):
            print(f"  {100.0 * n / total:5.1f}%  {name}")
    print("by package (stdlib and helpers charged to their caller), with its top frames:")
    for package, counts in sorted(packages.items(), key=lambda kv: -kv[1].total())[:top]:
        print(f"  {100.0 * counts.total() / total:5.1f}%  {package}")
        for name, n in counts.most_common(3):
            print(f"          {100.0 * n / total:5.1f}%  {name}")


def _frame(raw: str) -> tuple[str, bool]:
    """`func (/venv/lib/python3.11/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`, and
    whether the frame is the standard library's or a helper's."""
    stdlib = re.search(r"\(<|/lib/python3\.\d+/(?!site-packages/)", raw) is not None
    name = re.sub(r":\d+\)$", ")", raw)
    name = re.sub(r"\(/\S*/lib/python3\.\d+/(?:site-packages/)?", "(", name)
    name = re.sub(r"\(/\S*/src/lipika/", "(lipika/", name)
    return name, stdlib or _package(name) in HELPERS


def _package(name: str) -> str:
    return name.rsplit("(", 1)[-1].rstrip(")").split("/", 1)[0].removesuffix(".py")


def main() -> int:
    args = parse_args()
    if args.show_profile:
        print_profile(args.show_profile)
        return 0
    harness = args.peerbench / ".venv-harness" / "bin" / "python"
    if not harness.exists():
        sys.exit(
            f"no peerbench at {args.peerbench}: copy ../shared/peerbench there and run setup.sh"
        )
    busy = [p for p in (UP_PORT, args.port) if not port_free(p)]
    if busy:
        sys.exit(f"ports {busy} are in use: is another benchmark running?")
    if os.cpu_count() and os.cpu_count() >= 2:
        os.sched_setaffinity(0, {0})  # the load clients (this process and its loadgens): CPU 0
    pb = load_peerbench(args.peerbench)
    import loadgen as lg  # on the path now: the /proc helpers (cpu_seconds, rss_mb) and summary

    outdir = args.peerbench / "results" / (args.out or time.strftime("threads-%Y%m%d-%H%M%S"))
    (outdir / "logs").mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cleanup below

    results: dict[str, Any] = {}
    litellm_version = "?"
    balanced = False
    with tempfile.TemporaryDirectory(prefix="lipika-bench-") as tmp:
        env = environment(args, Path(tmp))
        try:
            if "LIPIKA_DATABASE_URL" in env:  # checkpoints on PostgreSQL too, as deployed
                env["LIPIKA_CHECKPOINT_DATABASE_URL"] = env["LIPIKA_DATABASE_URL"]
            env.update(item.split("=", 1) for item in args.env)
            settings = settings_for(env)
            key = asyncio.run(create_account(settings))
            try:
                results.update(measure_ours(args, pb, lg, env, key, outdir))
            finally:
                pb.stop_all()
            if not args.no_litellm:
                results["litellm"], litellm_version = run_litellm(args, outdir)
            balanced = asyncio.run(check_books(settings))
        finally:
            drop_database(env)
    (outdir / "threads_summary.json").write_text(json.dumps(results, indent=1))
    report(args, results, litellm_version)
    if args.profile and args.profile.exists():
        print_profile(args.profile)
    print(f"\nresults in {outdir}")
    ours = [results.get("threads")] + ([] if args.no_chat else [results.get("chat")])
    clean = all(r is not None and not r["errors"] and not r.get("not_started") for r in ours)
    return 0 if balanced and clean else 1


if __name__ == "__main__":
    sys.exit(main())
