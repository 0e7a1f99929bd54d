"""Tracing: off by default; with an exporter, one request is one trace with the provider call
inside it, and the request's log line carries the trace id."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from asgi_lifespan import LifespanManager
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from lipika.app import create_app
from lipika.config import Settings
from lipika.ops.tracing import Tracing


def test_tracing_is_off_unless_the_otel_variables_ask() -> None:
    assert not Tracing.from_environment({}).enabled
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not Tracing.from_environment({**endpoint, "OTEL_SDK_DISABLED": "true"}).enabled
    assert not Tracing.from_environment({**endpoint, "OTEL_TRACES_EXPORTER": "none"}).enabled
    on = Tracing.from_environment(endpoint)
    assert on.enabled
    on.shutdown()


async def test_one_request_is_one_trace_with_the_provider_span_inside(
    settings: Settings, client: httpx.AsyncClient, signup, caplog: pytest.LogCaptureFixture
) -> None:
    account = await signup()  # on the suite's app: tables are shared, and emptied after
    exporter = InMemorySpanExporter()
    traced = create_app(settings, tracing=Tracing.exporting_to(exporter))
    async with LifespanManager(traced) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
            exporter.clear()
            with caplog.at_level(logging.INFO, logger="lipika.access"):
                response = await http.post(
                    "/v1/chat/completions",
                    json={"model": "demo", "messages": [{"role": "user", "content": "Trace me"}]},
                    headers=account.headers,
                )
    assert response.status_code == 200, response.text

    # The background loops (reconciliation, alarms) make traces of their own.
    [server] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    spans = [
        s for s in exporter.get_finished_spans() if s.context.trace_id == server.context.trace_id
    ]
    by_id = {s.context.span_id: s for s in spans}
    [provider] = [s for s in spans if s.name == "provider.complete"]
    assert provider.attributes["gen_ai.system"] == "demo"
    assert provider.attributes["gen_ai.usage.output_tokens"] > 0
    ancestor = provider
    while ancestor.parent is not None and ancestor.parent.span_id in by_id:
        ancestor = by_id[ancestor.parent.span_id]
    assert ancestor is server
    assert any(s.kind is SpanKind.CLIENT and s.attributes.get("db.system") for s in spans)

    [line] = [
        r.msg
        for r in caplog.records
        if r.name == "lipika.access"
        and isinstance(r.msg, dict)
        and r.msg["path"] == "/v1/chat/completions"
    ]
    assert line["trace_id"] == format(server.context.trace_id, "032x")


async def test_a_job_runs_in_a_trace_of_its_own_linked_to_its_submit(
    settings: Settings, signup
) -> None:
    account = await signup()
    exporter = InMemorySpanExporter()
    traced = create_app(settings, tracing=Tracing.exporting_to(exporter))
    async with LifespanManager(traced) as manager:
        runner = manager._state["jobs"]
        runner.kinds["image"].providers["demo"].work_seconds = 0.01
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
            submitted = await http.post(
                "/v1/jobs",
                json={"kind": "image", "params": {"prompt": "a kite", "model": "demo"}},
                headers=account.headers,
            )
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["id"]
            for _ in range(200):
                job = (await http.get(f"/v1/jobs/{job_id}", headers=account.headers)).json()
                if job["status"] == "succeeded":
                    break
                await asyncio.sleep(0.02)
            assert job["status"] == "succeeded", job
    spans = exporter.get_finished_spans()
    [run] = [s for s in spans if s.name == "job.run" and s.attributes["lipika.job.id"] == job_id]
    assert run.parent is None  # a root: its own trace
    [submit] = [
        s
        for s in spans
        if s.kind is SpanKind.SERVER and s.context.trace_id == run.links[0].context.trace_id
    ]
    assert "/v1/jobs" in submit.name
    inside = [s for s in spans if s.context.trace_id == run.context.trace_id and s is not run]
    assert any(s.attributes.get("db.system") for s in inside)  # the job's queries are in it
