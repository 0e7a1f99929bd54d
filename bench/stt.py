#!/usr/bin/env python
"""Real-time speech benchmark: concurrent live sessions of 16 kHz PCM16 in 20 ms frames through
one server process, against a provider that echoes a transcript for every frame.

    .venv/bin/python bench/stt.py [--sessions 200] [--seconds 20] [--backend sqlite|postgres]

The server (`uvicorn`, one worker, the full app: API-key auth, admission, slice-by-slice hold
extension, settlement) runs pinned to CPU 0; this load generator runs on CPU 1. The provider is
the demo transcriber set to hear one word every 20 ms, so every frame comes back as one
`interim` (or `final`) event whose `end` names the frame: the added latency is the time from a
frame's send to its event's arrival, server, relay and metering included. Printed: p50/p95/max
added latency, server CPU seconds per audio-minute, the server's RSS (now and peak), and
dropped sessions (any that did not end with `usage` and `done`). The ledger is audited after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psycopg
import websockets

ROOT = Path(__file__).resolve().parents[1]
try:
    import lipika  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(ROOT / "src"))

sys.path.insert(0, str(ROOT / "bench"))
from stream import ADMIN_DSN, REDIS_URL, check_books, create_account, settings_for  # noqa: E402

from lipika.billing.plans import DEFAULT_PATH as PLANS  # noqa: E402

RATE = 16_000
FRAME_SECONDS = 0.02
FRAME = b"\x01\x00" * int(RATE * FRAME_SECONDS)  # 20 ms of PCM16
UNLIMITED_PLAN = """
[plans.bench]
label = "Benchmark (no limits)"
models = ["*"]
"""


def serve(port: int, pin: bool) -> None:
    """The server process: the app with the demo transcriber echoing every frame."""
    if pin:
        os.sched_setaffinity(0, {0})
    import uvicorn

    from lipika import app as application
    from lipika.logs import configure_logging
    from lipika.providers.demo_speech import DemoTranscriptionProvider
    from lipika.providers.speech import TranscriptionRegistry

    echo = DemoTranscriptionProvider(word_seconds=FRAME_SECONDS, words_per_segment=50)
    application.build_transcription_registry = lambda settings: TranscriptionRegistry(
        {"demo": echo}, {"demo": echo}
    )
    configure_logging("WARNING", json=True)
    uvicorn.run(
        application.create_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_max_size=2**20,
    )


def environment(backend: str, workdir: Path) -> dict[str, str]:
    plans = workdir / "plans.toml"
    plans.write_text(PLANS.read_text() + UNLIMITED_PLAN)
    (workdir / "data").mkdir()
    env = {
        "LIPIKA_DATA_DIR": str(workdir / "data"),
        "LIPIKA_PLANS_PATH": str(plans),
        "LIPIKA_LOG_LEVEL": "WARNING",
        "LIPIKA_STT_SLICE_SECONDS": "10",
        "LIPIKA_STT_MAX_LEAD_SECONDS": "1",
    }
    if backend == "postgres":
        database = f"lipika_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        env["LIPIKA_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
        env["LIPIKA_REDIS_URL"] = REDIS_URL
    return env


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


class Session:
    def __init__(self, url: str, key: str, frames: int, offset: float) -> None:
        self.url = url
        self.key = key
        self.frames = frames
        self.offset = offset
        self.sent_at: list[float] = [0.0] * frames
        self.latencies: list[float] = []
        self.ended: dict | None = None
        self.usage: dict | None = None
        self.error: str | None = None

    async def run(self, start: float) -> None:
        try:
            async with websockets.connect(
                self.url, additional_headers={"Authorization": f"Bearer {self.key}"}, max_size=None
            ) as ws:
                ready = orjson.loads(await ws.recv())
                if ready.get("type") != "ready":
                    self.error = f"refused: {ready}"
                    return
                receiver = asyncio.create_task(self._receive(ws))
                loop = asyncio.get_running_loop()
                for index in range(self.frames):
                    due = start + self.offset + index * FRAME_SECONDS
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    self.sent_at[index] = loop.time()
                    await ws.send(FRAME)
                await ws.send('{"type": "close"}')
                await asyncio.wait_for(receiver, 60)
        except Exception as exc:  # a dropped session
            self.error = repr(exc)

    async def _receive(self, ws) -> None:
        loop = asyncio.get_running_loop()
        async for message in ws:
            event = orjson.loads(message)
            kind = event["type"]
            if kind in ("interim", "final"):
                index = round(event["end"] / FRAME_SECONDS) - 1
                if 0 <= index < self.frames and self.sent_at[index]:
                    self.latencies.append(loop.time() - self.sent_at[index])
            elif kind == "usage":
                self.usage = event
            elif kind in ("done", "error"):
                self.ended = event


async def load(url: str, key: str, sessions: int, seconds: float, pid: int) -> dict:
    frames = int(seconds / FRAME_SECONDS)
    runs = [Session(url, key, frames, i * FRAME_SECONDS / sessions) for i in range(sessions)]
    loop = asyncio.get_running_loop()
    cpu_before = cpu_seconds(pid)
    client_before = time.process_time()
    wall_before = time.monotonic()
    start = loop.time() + 2.0  # every session connected before the first frame is due
    await asyncio.gather(*(run.run(start) for run in runs))
    cpu = cpu_seconds(pid) - cpu_before
    client_cpu = time.process_time() - client_before
    wall = time.monotonic() - wall_before
    latencies = sorted(x for run in runs for x in run.latencies)
    dropped = [r for r in runs if r.error or not r.ended or r.ended.get("type") != "done"]
    audio_minutes = sum((r.usage or {}).get("audio_seconds", 0) for r in runs) / 60
    rss, peak = memory_mib(pid)
    return {
        "sessions": sessions,
        "frames_per_second": sessions / FRAME_SECONDS,
        "events": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
        "max_ms": 1000 * latencies[-1] if latencies else None,
        "server_cpu_s_per_audio_minute": cpu / audio_minutes if audio_minutes else None,
        "audio_minutes": audio_minutes,
        "server_cpu_share_of_one_core": cpu / wall,
        "load_generator_cpu_share_of_one_core": client_cpu / wall,
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "dropped": len(dropped),
        "dropped_examples": [r.error or r.ended for r in dropped[:3]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--no-pin", action="store_true", help="leave both processes unpinned")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, pin=not args.no_pin)
        return 0
    if not args.no_pin:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as tmp:
        env = environment(args.backend, Path(tmp))
        settings = settings_for(env)
        key = asyncio.run(create_account(settings))
        port = 20000 + secrets.randbelow(20000)
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(port),
                *(["--no-pin"] if args.no_pin else []),
            ],
            env={**os.environ, **env},
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    with __import__("socket").create_connection(("127.0.0.1", port), 0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            url = f"ws://127.0.0.1:{port}/v1/audio/transcriptions/live"
            figures = asyncio.run(load(url, key, args.sessions, args.seconds, server.pid))
        finally:
            server.terminate()
            server.wait(30)
        for name, value in figures.items():
            print(f"{name}: {round(value, 2) if isinstance(value, float) else value}")
        balanced = asyncio.run(check_books(settings))
        if env.get("LIPIKA_DATABASE_URL"):
            from stream import drop_database

            drop_database(env)
    return 0 if balanced and figures["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
