"""Prometheus metrics: every family of the service on one registry, built in the lifespan.

A registry per app (not prometheus-client's global one) keeps several apps in one process,
as the tests run them, from sharing counters. Labels are bounded sets only: route templates,
price-book names, policy outcomes, error codes. Never a user, workspace or key id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.billing.meter import Settlement
from lipika.billing.policy import Charge, Outcome, charge_for
from lipika.billing.pricebook import Price
from lipika.kit import access

# Seconds. Requests: most are milliseconds, streams run up to the 600 s budget.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 60)
RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The service's metric families, and the hooks the rest of the code calls."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lipika_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "lipika_http_request_duration_seconds",
            "Time from request to the end of the response (a stream: its whole life).",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.open_streams = Gauge(
            "lipika_open_streams",
            "Server-sent event streams and WebSockets open now.",
            ["kind"],
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "lipika_time_to_first_token_seconds",
            "Time from the provider call to its first text delta.",
            ["provider", "model"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "lipika_tokens",
            "Tokens charged for, by provider, model, token kind and charge outcome.",
            ["provider", "model", "kind", "outcome"],
            registry=r,
        )
        self.credits = Counter(
            "lipika_credits_charged_microcredits",
            "Micro-credits charged, by provider, model and charge outcome.",
            ["provider", "model", "outcome"],
            registry=r,
        )
        self.admissions = Counter(
            "lipika_admissions",
            "Admissions by operation and result (admitted, or the refusal's error code).",
            ["operation", "result"],
            registry=r,
        )
        self.settlements = Counter(
            "lipika_settlements",
            "Holds settled, by final status and charge outcome (repeated settles not counted).",
            ["status", "outcome"],
            registry=r,
        )
        self.speech_sessions = Counter(
            "lipika_speech_sessions",
            "Real-time speech sessions ended, by price-book model and charge outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.speech_audio_seconds = Counter(
            "lipika_speech_audio_seconds",
            "Audio seconds relayed to transcription providers, by price-book model.",
            ["model"],
            registry=r,
        )
        self.open_holds = Gauge(
            "lipika_open_holds", "Open holds (set by the invariant check).", registry=r
        )
        self.oldest_open_hold_seconds = Gauge(
            "lipika_oldest_open_hold_age_seconds",
            "Age of the oldest open hold (set by the invariant check).",
            registry=r,
        )
        self.provider_errors = Counter(
            "lipika_provider_errors",
            "Provider call failures by provider and kind (the error code).",
            ["provider", "kind"],
            registry=r,
        )
        self.reconcile_runs = Counter(
            "lipika_reconcile_runs",
            "Reconciliation passes this pod ran, by result.",
            ["result"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "lipika_reconcile_duration_seconds",
            "Duration of a reconciliation pass.",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.invariant_violations = Gauge(
            "lipika_invariant_violations",
            "Rows breaking a ledger invariant at the last check this pod ran (0: none).",
            ["check"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "lipika_webhook_deliveries",
            "Inbound webhook deliveries by source and intake (accepted, forged, replayed, stale).",
            ["source", "intake"],
            registry=r,
        )
        self.webhook_results = Counter(
            "lipika_webhook_results",
            "Accepted webhook deliveries by source and what handling them did.",
            ["source", "result"],
            registry=r,
        )
        self.payments = Counter(
            "lipika_payment_orders",
            "Payment orders by kind and the state they reached (pending, paid, held, ...).",
            ["kind", "state"],
            registry=r,
        )
        self.jobs = Gauge(
            "lipika_jobs",
            "Queued and running jobs by kind and state (set by the invariant check).",
            ["kind", "state"],
            registry=r,
        )
        self.jobs_finished = Counter(
            "lipika_jobs_finished",
            "Jobs this pod brought to an end, by kind and final state.",
            ["kind", "state"],
            registry=r,
        )
        self.job_adoptions = Counter(
            "lipika_job_adoptions",
            "Jobs this pod adopted after their lease expired or was given up.",
            registry=r,
        )
        self.invariant_checks = Counter(
            "lipika_invariant_checks",
            "Invariant checks this pod ran, by result.",
            ["result"],
            registry=r,
        )

    def watch_pools(self, engine: AsyncEngine, checkpoint_pool: Any | None) -> None:
        """Reports the connection pools' use at each scrape."""
        self.registry.register(_PoolCollector(engine, checkpoint_pool))

    # -- hooks -------------------------------------------------------------------------------

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def first_token(self, provider: str, model: str, seconds: float) -> None:
        self.first_token_seconds.labels(provider, model).observe(seconds)

    def provider_failed(self, provider: str, kind: str) -> None:
        self.provider_errors.labels(provider, kind).inc()

    def reconciled(self, seconds: float, failed: bool) -> None:
        self.reconcile_runs.labels("failed" if failed else "ok").inc()
        self.reconcile_seconds.observe(seconds)


class WebhookEvents:
    """The inbox's observer: intake and handling results, by source."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def received(self, source: str, intake: str) -> None:
        self.metrics.webhook_deliveries.labels(source, intake).inc()

    def handled(self, source: str, result: str) -> None:
        self.metrics.webhook_results.labels(source, result).inc()


def serve_metrics(metrics: Metrics, port: int | None) -> WSGIServer | None:
    """With `LIPIKA_METRICS_PORT`, the metrics on a port of their own (a thread of
    prometheus-client's), kept off the API port that an ingress publishes."""
    if port is None:
        return None
    server, _ = start_http_server(port, addr="0.0.0.0", registry=metrics.registry)
    return server


class MeterEvents:
    """What the meter reports (admissions, settlements, charges), to the metrics and to the
    request's access-log line. The meter calls these and knows nothing of either."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def admitted(self, operation: str, result: str) -> None:
        self.metrics.admissions.labels(operation, result).inc()
        if result != "admitted":
            access.note(outcome=result)

    def settled(self, settlement: Settlement, outcome: Outcome) -> None:
        if not settlement.already_settled:
            self.metrics.settlements.labels(settlement.status.value, outcome.value).inc()

    def charged(
        self,
        price: Price | None,
        outcome: Outcome,
        settlement: Settlement,
        *,
        usage: Mapping[str, int] | None,
        usage_so_far: Mapping[str, int] | None,
    ) -> None:
        """One settled operation of a request: tokens and credits by provider and model."""
        if settlement.already_settled or price is None:
            return
        charged_usage = _charged_usage(outcome, usage, usage_so_far)
        provider = price.provider or price.kind
        for kind, count in charged_usage.items():
            if kind.endswith("_tokens") and count:
                self.metrics.tokens.labels(provider, price.name, kind, outcome.value).inc(count)
        if settlement.charged:
            self.metrics.credits.labels(provider, price.name, outcome.value).inc(settlement.charged)
        access.charge(price.name, outcome.value, charged_usage, settlement.charged)


def _charged_usage(
    outcome: Outcome, usage: Mapping[str, int] | None, usage_so_far: Mapping[str, int] | None
) -> Mapping[str, int]:
    """The usage the charge policy charged for this outcome (none for a free outcome)."""
    match charge_for(outcome):
        case Charge.REPORTED_USAGE:
            return usage or {}
        case Charge.USAGE_SO_FAR:
            return usage_so_far or {}
        case _:
            return {}


class _PoolCollector(Collector):
    """Connections checked out of the app and checkpoint pools, read at scrape time."""

    def __init__(self, engine: AsyncEngine, checkpoint_pool: Any | None) -> None:
        self.engine = engine
        self.checkpoint_pool = checkpoint_pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use = GaugeMetricFamily(
            "lipika_db_pool_connections_in_use", "Connections checked out now.", labels=["pool"]
        )
        ceiling = GaugeMetricFamily(
            "lipika_db_pool_connections_max", "The pool's connection ceiling.", labels=["pool"]
        )
        pool = self.engine.pool
        if hasattr(pool, "checkedout"):
            in_use.add_metric(["app"], pool.checkedout())
            ceiling.add_metric(["app"], pool.size())  # the engine allows no overflow
        if self.checkpoint_pool is not None and hasattr(self.checkpoint_pool, "get_stats"):
            stats = self.checkpoint_pool.get_stats()
            in_use.add_metric(
                ["checkpoint"], stats.get("pool_size", 0) - stats.get("pool_available", 0)
            )
            ceiling.add_metric(["checkpoint"], self.checkpoint_pool.max_size)
        yield in_use
        yield ceiling


class JobMetrics:
    """The job runner's observer: adoptions and finished jobs."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def adopted(self, count: int) -> None:
        self.metrics.job_adoptions.inc(count)

    def finished(self, kind: str, status: str) -> None:
        self.metrics.jobs_finished.labels(kind, status).inc()
