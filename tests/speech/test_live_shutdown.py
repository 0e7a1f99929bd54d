"""A pod told to stop (SIGTERM) mid-session: the server closes the socket with 1012 (service
restart, reconnect), and the session is settled before the process exits, charged the finals
it delivered (docs/charge-policy.md, `server_shutdown`); the audit balances."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import websockets

from lipika.billing.policy import Outcome
from lipika.config import Settings
from tests.speech.audio import RATE, frames, speech_pcm
from tests.speech.conftest import RATE_MICRO, Received, collect, workspace

FRAME = RATE * 2 // 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIPIKA_")}
    env.update(
        LIPIKA_DATA_DIR=str(settings.data_dir),
        LIPIKA_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        LIPIKA_LOG_JSON="false",
        LIPIKA_LOG_LEVEL="WARNING",
        LIPIKA_STT_SLICE_SECONDS="2",
        LIPIKA_STT_MAX_LEAD_SECONDS="3600",
    )
    for name in ("database_url", "checkpoint_database_url", "redis_url"):
        if getattr(settings, name):
            env[f"LIPIKA_{name.upper()}"] = getattr(settings, name)
    return env


async def test_sigterm_mid_session_closes_with_1012_and_settles(
    settings: Settings, signup, books
) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "lipika.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        env=_environment(settings),
    )
    try:
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        got = Received()
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/v1/audio/transcriptions/live",
            additional_headers=account.headers,
        ) as ws:
            reader = asyncio.create_task(collect(ws, got))
            for chunk in frames(speech_pcm(), FRAME):  # 5 s; demo finals every 3.2 s
                await ws.send(chunk)
            while not got.of("final"):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # all the audio has been read
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(reader, 10)
        assert got.close_code == 1012
        # uvicorn re-raises the signal it caught once it has shut down (the default exit)
        assert await asyncio.wait_for(server.wait(), 20) in (0, -signal.SIGTERM)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    [hold] = await books.holds(ws_id)
    assert hold.outcome == Outcome.SERVER_SHUTDOWN.value
    assert hold.captured == 4 * RATE_MICRO  # the final delivered ends at 3.2 s
    assert (await books.state(ws_id)).balance == before.balance - 4 * RATE_MICRO
    await books.assert_balanced()
