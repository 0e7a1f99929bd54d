"""The threads API: create, list, read, rename, delete; send a message and stream the answer."""

from __future__ import annotations

import asyncio
import base64
import uuid

import httpx
from asgi_lifespan import LifespanManager

from lipika.app import create_app
from lipika.billing.pricebook import PriceBook
from lipika.config import Settings
from lipika.providers.base import ChatRequest, Message, ProviderOverloaded
from lipika.providers.demo import DemoProvider
from tests.agent.scripted import Reply, Script
from tests.threads.conftest import events_of, slow_demo

DEMO = PriceBook.load().get("demo")


async def test_threads_are_created_listed_read_renamed_and_deleted(
    client: httpx.AsyncClient, signup, threads
) -> None:
    account = await signup()
    created = await threads.create(account.headers, "Trip plans")
    assert created["title"] == "Trip plans"
    assert created["created_by"] == account.user_id
    assert created["run_in_progress"] is False

    read = await client.get(f"/v1/threads/{created['id']}", headers=account.headers)
    assert read.json() == created
    renamed = await client.patch(
        f"/v1/threads/{created['id']}", json={"title": "Holiday"}, headers=account.headers
    )
    assert renamed.status_code == 200 and renamed.json()["title"] == "Holiday"
    listed = (await client.get("/v1/threads", headers=account.headers)).json()
    assert [t["id"] for t in listed["data"]] == [created["id"]]
    assert (listed["has_more"], listed["next_cursor"]) == (False, None)

    await threads.say(account.headers, created["id"])
    deleted = await client.delete(f"/v1/threads/{created['id']}", headers=account.headers)
    assert deleted.status_code == 204
    for method in ("GET", "PATCH", "DELETE"):
        gone = await client.request(
            method, f"/v1/threads/{created['id']}", json={"title": "x"}, headers=account.headers
        )
        assert gone.status_code == 404, gone.text
    assert (
        await client.get(f"/v1/threads/{created['id']}/messages", headers=account.headers)
    ).status_code == 404
    assert (await client.get("/v1/threads", headers=account.headers)).json()["data"] == []


async def test_a_message_streams_typed_events_and_is_charged_its_usage(
    client: httpx.AsyncClient, signup, threads
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    response = await threads.send(
        account.headers, thread["id"], "Hello there, demo!", max_tokens=12
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    events = events_of(response)

    tokens = [e for e in events if e["type"] == "token"]
    assert len(tokens) == 12
    usage = [e for e in events if e["type"] == "usage"]
    assert len(usage) == 1
    input_tokens = DemoProvider().estimate_input_tokens(
        ChatRequest("demo", [Message("user", "Hello there, demo!")], max_output_tokens=1)
    )
    assert usage[0]["input_tokens"] == input_tokens
    cost = DEMO.cost({"input_tokens": input_tokens, "output_tokens": 12})
    assert usage[0]["credits_charged"] == cost
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert events[-1] == {
        "type": "done",
        "credits_charged": cost,
        "balance_after": balance["balance"],
        "steps": 1,
    }
    assert usage[0]["balance_after"] == balance["balance"]
    assert balance["held"] == 0
    ledger = (await client.get("/v1/billing/ledger", headers=account.headers)).json()["data"]
    assert (ledger[0]["kind"], ledger[0]["amount"], ledger[0]["model"]) == ("usage", -cost, "demo")

    history = await threads.history(account.headers, thread["id"])
    assert [(m["role"], m["model"]) for m in history["data"]] == [
        ("user", None),
        ("assistant", "demo"),
    ]
    assert history["data"][0]["content"] == "Hello there, demo!"
    assert history["data"][1]["content"] == "".join(t["text"] for t in tokens)
    assert history["data"][1]["credits_charged"] == cost

    read = (await client.get(f"/v1/threads/{thread['id']}", headers=account.headers)).json()
    assert read["title"] == "Hello there, demo!"  # titled from its first message
    assert read["last_model"] == "demo"
    assert read["updated_at"] > thread["updated_at"]


async def test_a_message_without_stream_answers_with_the_run(
    client: httpx.AsyncClient, signup, threads
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    response = await threads.send(account.headers, thread["id"], stream=False)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["object"] == "thread.run"
    assert [m["role"] for m in run["messages"]] == ["assistant"]
    assert run["credits_charged"] == run["messages"][0]["credits_charged"] > 0
    assert run["steps"] == 1
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert run["balance_after"] == balance["balance"]


async def test_a_tool_run_reports_each_tool_step_and_its_credits(
    client: httpx.AsyncClient, signup, threads, use_model
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    use_model(
        "demo",
        Script(
            [Reply(tool_calls=[("clock", {"timezone": "Asia/Dhaka"})]), Reply(text="It is morning")]
        ).provider(),
    )

    events = await threads.say(account.headers, thread["id"], "What time is it in Dhaka?")

    assert [e["type"] for e in events] == [
        "usage",
        "tool_start",
        "tool_end",
        "token",
        "token",
        "token",
        "usage",
        "done",
    ]
    start, end = events[1], events[2]
    assert (start["tool"], start["args"]) == ("clock", {"timezone": "Asia/Dhaka"})
    assert end["credits_charged"] == 10_000 and "+06:00" in end["output"]
    assert events[-1]["credits_charged"] == sum(
        e["credits_charged"] for e in events if e["type"] in ("usage", "tool_end")
    )
    history = (await threads.history(account.headers, thread["id"]))["data"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[1]["tool_calls"] == [
        {"id": start["call_id"], "name": "clock", "args": {"timezone": "Asia/Dhaka"}}
    ]
    assert (history[2]["tool_call_id"], history[2]["tool_name"], history[2]["status"]) == (
        start["call_id"],
        "clock",
        "success",
    )
    assert history[2]["credits_charged"] == 10_000


async def test_one_thread_keeps_its_history_across_models(
    client: httpx.AsyncClient, signup, threads, use_model, books
) -> None:
    account = await signup()
    await books.assign_plan(uuid.UUID(account.personal_workspace_id), "pro")
    thread = await threads.create(account.headers)
    claude, gpt = Script([Reply(text="Claude here")]), Script([Reply(text="GPT here")])
    use_model("anthropic", claude.provider())
    use_model("openai", gpt.provider())

    await threads.say(account.headers, thread["id"], "First, demo", model="demo")
    await threads.say(account.headers, thread["id"], "Then Claude", model="claude-sonnet-4-5")
    await threads.say(account.headers, thread["id"], "Then GPT", model="gpt-5")

    history = (await threads.history(account.headers, thread["id"]))["data"]
    assert [(m["role"], m["model"]) for m in history] == [
        ("user", None),
        ("assistant", "demo"),
        ("user", None),
        ("assistant", "claude-sonnet-4-5"),
        ("user", None),
        ("assistant", "gpt-5"),
    ]
    assert [m.content for m in gpt.calls[0].messages] == [m["content"] for m in history[:5]]
    holds = await books.holds(uuid.UUID(account.personal_workspace_id))
    assert [h.model for h in holds] == ["demo", "claude-sonnet-4-5", "gpt-5"]


async def test_history_and_thread_lists_are_paginated(
    client: httpx.AsyncClient, signup, threads
) -> None:
    account = await signup()
    ids = [(await threads.create(account.headers, f"t{i}"))["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/threads", params=params, headers=account.headers)).json()
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == ids[::-1]  # most recently active first
    await threads.say(account.headers, ids[0])
    first = (await client.get("/v1/threads", params={"limit": 1}, headers=account.headers)).json()
    assert first["data"][0]["id"] == ids[0]
    bad = await client.get("/v1/threads", params={"cursor": "nonsense"}, headers=account.headers)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_cursor")
    # Well-formed cursors of impossible moments (no zone; a zone that runs out of the calendar)
    for moment in ("2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00"):
        forged = base64.urlsafe_b64encode(f"{moment}|{ids[0]}".encode()).decode().rstrip("=")
        odd = await client.get("/v1/threads", params={"cursor": forged}, headers=account.headers)
        assert (odd.status_code, odd.json()["error"]["code"]) == (400, "invalid_cursor"), moment

    for n in range(3):
        await threads.say(account.headers, ids[1], f"message {n}")
    everything = (await threads.history(account.headers, ids[1]))["data"]
    assert len(everything) == 6
    last = await threads.history(account.headers, ids[1], limit=4)
    assert last["data"] == everything[2:] and last["has_more"] is True
    older = await threads.history(account.headers, ids[1], limit=4, before=last["next_before"])
    assert older["data"] == everything[:2] and older["has_more"] is False
    assert older["next_before"] is None


async def test_refusals_before_the_first_step_are_plain_http_errors(
    client: httpx.AsyncClient, signup, threads, books, use_model
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)

    async def refused(status: int, code: str, **body) -> None:
        response = await threads.send(account.headers, thread["id"], **body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
            response.text
        )

    await refused(404, "model_not_found", model="no-such-model")
    await refused(503, "model_unavailable", model="gpt-5-mini")  # no OpenAI key on this server
    use_model("anthropic", Script([]).provider())
    await refused(403, "model_not_in_plan", model="claude-opus-4-5")
    await refused(429, "run_credit_cap", max_credits="0.000001")
    await refused(400, "invalid_amount", max_credits="0.0000001")
    await refused(422, "validation_error", content="")
    workspace = uuid.UUID(account.personal_workspace_id)
    await books.set_available(workspace, 0)
    await refused(402, "insufficient_credits")
    assert await books.holds(workspace) == []
    # None of those left the thread locked.
    await books.set_available(workspace, 10_000_000)
    await threads.say(account.headers, thread["id"])


async def test_a_second_message_while_the_first_streams_is_refused_with_409(
    client: httpx.AsyncClient, signup, threads, use_model
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    use_model("demo", slow_demo(0.02))
    first = asyncio.create_task(threads.send(account.headers, thread["id"], "one", max_tokens=30))
    async with asyncio.timeout(5):
        while not (await client.get(f"/v1/threads/{thread['id']}", headers=account.headers)).json()[
            "run_in_progress"
        ]:
            await asyncio.sleep(0.01)

    second = await threads.send(account.headers, thread["id"], "two")
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "run_in_progress"
    deleting = await client.delete(f"/v1/threads/{thread['id']}", headers=account.headers)
    assert (deleting.status_code, deleting.json()["error"]["code"]) == (409, "run_in_progress")

    assert events_of(await first)[-1]["type"] == "done"
    assert (await client.get(f"/v1/threads/{thread['id']}", headers=account.headers)).json()[
        "run_in_progress"
    ] is False
    await threads.say(account.headers, thread["id"], "three")
    history = (await threads.history(account.headers, thread["id"]))["data"]
    assert [m["content"] for m in history if m["role"] == "user"] == ["one", "three"]


async def test_thread_history_survives_a_restart(
    client: httpx.AsyncClient, signup, threads, settings: Settings
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    await threads.say(account.headers, thread["id"], "Remember me")
    before = await threads.history(account.headers, thread["id"])

    restarted = create_app(settings)
    async with LifespanManager(restarted) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as again:
            after = await again.get(f"/v1/threads/{thread['id']}/messages", headers=account.headers)
            assert after.status_code == 200
            assert after.json() == before
            more = await again.post(
                f"/v1/threads/{thread['id']}/messages",
                json={"content": "Still there?", "model": "demo", "max_tokens": 4},
                headers=account.headers,
            )
            assert events_of(more)[-1]["type"] == "done"
    history = (await threads.history(account.headers, thread["id"]))["data"]
    assert [m["content"] for m in history if m["role"] == "user"] == ["Remember me", "Still there?"]


async def test_only_the_creator_or_an_admin_deletes_a_shared_thread(
    client: httpx.AsyncClient, team, threads
) -> None:
    workspace, people = await team()
    member, admin = people["member"], people["admin"]
    thread = await threads.create(people["owner"].in_workspace(workspace), visibility="workspace")
    listed = (await client.get("/v1/threads", headers=member.in_workspace(workspace))).json()[
        "data"
    ]
    assert [t["id"] for t in listed] == [thread["id"]]  # members see the threads shared with them

    refused = await client.delete(
        f"/v1/threads/{thread['id']}", headers=member.in_workspace(workspace)
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_role")
    own = await threads.create(member.in_workspace(workspace))
    assert (
        await client.delete(f"/v1/threads/{own['id']}", headers=member.in_workspace(workspace))
    ).status_code == 204
    assert (
        await client.delete(f"/v1/threads/{thread['id']}", headers=admin.in_workspace(workspace))
    ).status_code == 204


async def test_a_provider_failing_before_any_output_is_a_plain_http_error(
    client: httpx.AsyncClient, signup, threads, use_model, books
) -> None:
    account = await signup()
    thread = await threads.create(account.headers)
    use_model("demo", Script([Reply(error=ProviderOverloaded("overloaded"))]).provider())

    response = await threads.send(account.headers, thread["id"])

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_overloaded"
    [hold] = await books.holds(uuid.UUID(account.personal_workspace_id))
    assert hold.outcome == "provider_error_before_output"
    assert (await client.get(f"/v1/threads/{thread['id']}", headers=account.headers)).json()[
        "run_in_progress"
    ] is False
