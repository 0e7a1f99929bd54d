"""A client that hangs up mid-stream cancels the run over real HTTP (an in-process transport
cannot hang up): the step in flight is charged the tokens produced, and the thread is released."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from fastapi import FastAPI

from lipika.billing.models import HoldStatus
from tests.fixtures.live import serve
from tests.threads.conftest import slow_demo


async def test_hanging_up_mid_stream_cancels_the_run_and_charges_what_was_produced(
    app: FastAPI, client: httpx.AsyncClient, signup, threads, use_model, books
) -> None:
    account = await signup()
    workspace = uuid.UUID(account.personal_workspace_id)
    thread = await threads.create(account.headers)
    use_model("demo", slow_demo(0.05))
    tokens = 0
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as live:
        body = {"content": "Hello there", "model": "demo"}
        async with live.stream(
            "POST", f"/v1/threads/{thread['id']}/messages", json=body, headers=account.headers
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                tokens += line.startswith('data: {"type":"token"')
                if tokens == 3:
                    break
        async with asyncio.timeout(5):
            while (await books.holds(workspace))[0].status == HoldStatus.OPEN:
                await asyncio.sleep(0.02)
            while (await client.get(f"/v1/threads/{thread['id']}", headers=account.headers)).json()[
                "run_in_progress"
            ]:
                await asyncio.sleep(0.02)

    [hold] = await books.holds(workspace)
    assert (hold.status, hold.outcome) == (HoldStatus.CAPTURED, "client_disconnect")
    assert 3 <= hold.usage["output_tokens"] < 20  # the demo would have written 64+
    assert hold.captured > 0
    assert (await books.state(workspace)).held == 0
    await books.assert_balanced()
