"""OpenTelemetry tracing: off by default, on with the standard `OTEL_*` variables.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and
neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`): spans go over OTLP/HTTP,
batched, with the resource from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (the
exporter reads its own `OTEL_EXPORTER_OTLP_*` variables, headers and timeouts included).
Each request is one trace: FastAPI's server span, the database's and Redis's client spans,
and a span per provider call (ops/providers.py); log lines carry its ids (logs.py).

The tracer provider is made with the app, not in the lifespan, because FastAPI's
instrumentation is middleware, which must be in place before the app starts; the lifespan
instruments the engine and Redis it builds, and flushes and shuts the provider down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

# Probes and scrapes every few seconds would drown the traces that matter.
UNTRACED_URLS = "healthz,readyz,metrics"


class Tracing:
    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self._instrumented: list[object] = []

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Tracing:
        wanted = bool(
            environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
        disabled = environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
        if not wanted or disabled or environ.get("OTEL_TRACES_EXPORTER", "otlp") == "none":
            return cls(None)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider = TracerProvider(resource=_resource())
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    @classmethod
    def exporting_to(cls, exporter: SpanExporter) -> Tracing:
        """Every span handed to `exporter` as it ends (the tests' in-memory exporter)."""
        provider = TracerProvider(resource=_resource())
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    @property
    def tracer(self) -> trace.Tracer:
        if self.provider is None:
            return trace.NoOpTracer()
        return self.provider.get_tracer("lipika")

    def instrument_app(self, app: FastAPI) -> None:
        if self.provider is None:
            return
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, excluded_urls=UNTRACED_URLS
        )

    def instrument_stores(self, engine: AsyncEngine) -> None:
        """The app database's statements and every Redis command, as client spans."""
        if self.provider is None:
            return
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # The instrumentor's declared range stops below SQLAlchemy 2.1, whose engine events
        # it uses are unchanged; the tracing test holds it to producing spans.
        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine, tracer_provider=self.provider, skip_dep_check=True
        )
        RedisInstrumentor().instrument(tracer_provider=self.provider)
        self._instrumented = [SQLAlchemyInstrumentor(), RedisInstrumentor()]

    def shutdown(self) -> None:
        """Undoes the instrumentation and exports what is left."""
        for instrumentor in self._instrumented:
            instrumentor.uninstrument()  # type: ignore[attr-defined]
        self._instrumented = []
        if self.provider is not None:
            self.provider.shutdown()


def _resource() -> Resource:
    """`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, with `lipika` as the default name."""
    resource = Resource.create()
    if resource.attributes.get("service.name", "").startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "lipika"}))
    return resource
