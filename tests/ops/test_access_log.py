"""The access-log line says who acted, on which model, what it cost and how it ended."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest


def access_lines(caplog: pytest.LogCaptureFixture, path: str) -> list[dict]:
    return [
        r.msg
        for r in caplog.records
        if r.name == "lipika.access" and isinstance(r.msg, dict) and r.msg.get("path") == path
    ]


async def test_a_stream_line_names_the_key_the_model_the_charge_and_the_first_token(
    client: httpx.AsyncClient, signup, caplog: pytest.LogCaptureFixture
) -> None:
    account = await signup()
    key = await client.post("/v1/api-keys", json={"name": "log"}, headers=account.headers)
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    with caplog.at_level(logging.INFO, logger="lipika.access"):
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "demo",
                "messages": [{"role": "user", "content": "Hello log"}],
                "max_tokens": 10,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            headers=headers,
        )
    assert response.status_code == 200
    [line] = access_lines(caplog, "/v1/chat/completions")
    assert line["workspace_id"] == account.personal_workspace_id
    assert line["user_id"] == account.user_id
    assert line["api_key_id"] == key.json()["id"]
    assert (line["model"], line["outcome"], line["status"]) == ("demo", "success", 200)
    assert line["output_tokens"] == 10 and line["input_tokens"] > 0
    assert line["credits_charged"] > 0
    assert line["ttft_ms"] >= 0


async def test_a_refusal_line_names_its_code(
    client: httpx.AsyncClient, signup, books, caplog: pytest.LogCaptureFixture
) -> None:
    account = await signup()
    await books.set_available(uuid.UUID(account.personal_workspace_id), 1)
    with caplog.at_level(logging.INFO, logger="lipika.access"):
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": "Hi"}]},
            headers=account.headers,
        )
    assert response.status_code == 402
    [line] = access_lines(caplog, "/v1/chat/completions")
    assert (line["outcome"], line["workspace_id"]) == ("insufficient_credits", account.personal_workspace_id)
    assert line["api_key_id"] is None and "credits_charged" not in line
