"""create_app(): the FastAPI application and the lifespan that owns every long-lived resource."""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from lipika import __version__, migrate
from lipika.agent.runner import Agent
from lipika.apikeys.endpoints import router as api_keys_router
from lipika.auth.endpoints import router as auth_router
from lipika.auth.limits import AbuseLimiter
from lipika.auth.security import PasswordHashing
from lipika.billing.endpoints import router as billing_router
from lipika.billing.meter import build_meter
from lipika.billing.tasks import Reconciler, register_reconciliation
from lipika.chat.endpoints import router as chat_router
from lipika.checkpoint import CheckpointDB
from lipika.config import Settings
from lipika.db import create_engine, create_sessionmaker
from lipika.errors import install_error_handlers
from lipika.health import router as health_router
from lipika.idempotency.service import REPLAYED_HEADER, IdempotencyStore
from lipika.inbox.service import Inbox
from lipika.jobs.agent import AgentJobs, thread_note
from lipika.jobs.endpoints import router as jobs_router
from lipika.jobs.setup import build_runner, register_adoption
from lipika.kit.middleware import (
    BodySizeLimitMiddleware,
    GZipExceptStreams,
    RequestContextMiddleware,
)
from lipika.kit.tasks import cancel_and_wait
from lipika.mail.mailer import build_mailer
from lipika.openapi import install_openapi, operation_id
from lipika.ops.alarms import InvariantCheck, register_invariant_checks
from lipika.ops.endpoints import router as ops_router
from lipika.ops.metrics import JobMetrics, MeterEvents, Metrics, WebhookEvents, serve_metrics
from lipika.ops.providers import observe_providers
from lipika.ops.tracing import Tracing
from lipika.payments.endpoints import router as payments_router
from lipika.payments.tasks import build_payments, register_payment_tasks
from lipika.periodic import PeriodicTasks, lock_name
from lipika.providers.registry import build_media, build_registry
from lipika.providers.speech import build_transcription_registry
from lipika.ratelimits.service import PlanRateLimits
from lipika.redis import create_redis
from lipika.speech.endpoints import TRANSCRIPTIONS_PATH, UPLOAD_FORM_OVERHEAD
from lipika.speech.endpoints import router as speech_router
from lipika.speech.service import Draining
from lipika.speech.tickets import Tickets
from lipika.threads.endpoints import router as threads_router
from lipika.threads.leases import RunLeases, register_step_holds
from lipika.webhooks.endpoints import router as webhooks_router
from lipika.webhooks.service import WebhookSender
from lipika.workspaces.endpoints import router as workspaces_router

log = structlog.get_logger()

API_DESCRIPTION = (
    "One metered API for chat models and AI tools, sold on credits. Amounts are integer "
    "micro-credits (1 credit = 1,000,000). Errors have one shape (`ErrorResponse`); streams are "
    "server-sent events whose `data:` frames are `ChatCompletionChunk` or `ThreadEvent`."
)

# What browsers may send and read across origins (everything else is CORS-safelisted).
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-Workspace-Id",
    "Idempotency-Key",
    "X-Request-ID",
]
CORS_RESPONSE_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "X-Should-Retry",
    "X-RateLimit-Limit-Requests",
    "X-RateLimit-Remaining-Requests",
    "X-RateLimit-Reset-Requests",
    "X-RateLimit-Limit-Tokens",
    "X-RateLimit-Remaining-Tokens",
    "X-RateLimit-Reset-Tokens",
    REPLAYED_HEADER,
]

# Routes that answer with server-sent events (and so bypass GZip).
STREAM_PATHS = re.compile(
    r"^/v1/(chat/completions|threads/[^/]+/messages|jobs/[^/]+/events|jobs/[^/]+/content)$"
)


def _on_the_loop(loop: asyncio.AbstractEventLoop, work: Callable[[], Awaitable[Any]]):
    """A callable for a signal handler that starts `work()` as a task on `loop` (kept until
    it ends)."""
    running: set[asyncio.Task[Any]] = set()

    def start() -> None:
        task = loop.create_task(work(), name="signal-handoff")
        running.add(task)
        task.add_done_callback(running.discard)

    return lambda: loop.call_soon_threadsafe(start)


def create_app(settings: Settings | None = None, tracing: Tracing | None = None) -> FastAPI:
    settings = settings or Settings()
    tracing = tracing or Tracing.from_environment()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        settings.prepare_local_storage()
        settings.signing_key  # noqa: B018  (create or read the embedded secret before serving)
        if settings.embedded:
            await asyncio.to_thread(migrate.upgrade, settings.app_db_url)
        metrics = Metrics()
        engine = create_engine(settings)
        tracing.instrument_stores(engine)
        sessionmaker = create_sessionmaker(engine)
        redis = create_redis(settings)
        limiter = AbuseLimiter.open(settings)
        passwords = PasswordHashing(settings.password_hash_queue)
        checkpoint_db = await CheckpointDB.open(settings)
        metrics.watch_pools(engine, checkpoint_db.conn)
        meter = build_meter(settings, engine, MeterEvents(metrics))
        rate_limits = PlanRateLimits.open(settings, meter)
        providers = observe_providers(build_registry(settings), metrics, tracing.tracer)
        media = build_media(settings)
        webhooks = WebhookSender(
            sessionmaker,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            max_attempts=settings.webhook_max_attempts,
            allow_private=settings.webhook_private_urls_allowed,
        )
        jobs = build_runner(
            settings,
            sessionmaker,
            meter,
            redis,
            media,
            JobMetrics(metrics),
            webhooks,
            tracer=tracing.tracer,
        )
        jobs.start()
        agent = await Agent.open(
            settings, meter, checkpoint_db, providers.providers, jobs=AgentJobs(jobs)
        )
        jobs.thread_note = thread_note(agent.note)
        run_leases = RunLeases(sessionmaker, settings.run_lease_seconds)
        run_leases.start()
        register_step_holds(meter.resolvers, sessionmaker, settings.run_lease_seconds)
        reconciler = Reconciler(meter, sessionmaker)
        transcribers = build_transcription_registry(settings)
        stt_tickets = Tickets(redis, settings.redis_key_prefix, settings.stt_ticket_ttl_seconds)
        draining = Draining().install()
        # On SIGTERM the jobs are handed over at once: uvicorn waits for open streams (a job's
        # events, a thread run) before the lifespan ends, and another pod can run them meanwhile.
        handoff = _on_the_loop(asyncio.get_running_loop(), jobs.aclose)
        draining.on_signal(handoff)
        mailer = build_mailer(settings)
        periodic = PeriodicTasks(lock_name(settings.redis_key_prefix))  # each domain adds its work
        register_reconciliation(periodic, reconciler)
        register_invariant_checks(
            periodic,
            InvariantCheck.for_settings(settings, engine, metrics),
            settings.invariant_check_interval_seconds,
        )
        idempotency = IdempotencyStore.for_settings(settings, engine)
        periodic.register("idempotency", idempotency.purge_expired)
        inbox = Inbox(sessionmaker, WebhookEvents(metrics))  # every inbound webhook source
        payments = build_payments(
            settings,
            sessionmaker,
            meter.plans,
            inbox,
            lambda kind, state: metrics.payments.labels(kind, state).inc(),
        )
        register_payment_tasks(periodic, payments, inbox, settings)
        register_adoption(periodic, jobs)
        periodic.register("webhooks.deliver", webhooks.deliver_due)
        loop = asyncio.create_task(
            periodic.run_forever(redis, settings.reconcile_interval_seconds, metrics.reconciled),
            name="reconcile",
        )
        metrics_server = serve_metrics(metrics, settings.metrics_port)
        # Everything built so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise scan every imported SDK model on each run.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        log.info(
            "started", env=settings.env, embedded=settings.embedded, redis=bool(settings.redis_url)
        )
        try:
            yield {
                "settings": settings,
                "metrics": metrics,
                "engine": engine,
                "sessionmaker": sessionmaker,
                "redis": redis,
                "limiter": limiter,
                "passwords": passwords,
                "checkpoint_db": checkpoint_db,
                "meter": meter,
                "providers": providers,
                "agent": agent,
                "run_leases": run_leases,
                "reconciler": reconciler,
                "mailer": mailer,
                "periodic": periodic,
                "idempotency": idempotency,
                "rate_limits": rate_limits,
                "transcribers": transcribers,
                "stt_tickets": stt_tickets,
                "draining": draining,
                "inbox": inbox,
                "payments": payments,
                "jobs": jobs,
                "webhooks": webhooks,
            }
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            await cancel_and_wait(loop)
            draining.uninstall()
            await mailer.aclose()
            await transcribers.aclose()
            await payments.gateway.aclose()
            await jobs.aclose()  # gives its leases up: another pod adopts the jobs at once
            await media.aclose()
            await webhooks.aclose()
            await agent.aclose()  # each stopped run releases its thread ...
            await run_leases.aclose()  # ... and this frees any this process still holds
            await meter.aclose()
            await providers.aclose()
            await checkpoint_db.close()
            await limiter.aclose()
            await rate_limits.aclose()
            passwords.close()
            await redis.aclose()
            await engine.dispose()
            tracing.shutdown()

    app = FastAPI(
        title="Lipika",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    install_error_handlers(app)
    install_openapi(app)
    routers = (
        health_router,
        ops_router,
        auth_router,
        workspaces_router,
        api_keys_router,
        billing_router,
        payments_router,
        chat_router,
        threads_router,
        speech_router,
        jobs_router,
        webhooks_router,
    )
    for router in routers:
        app.include_router(router)
    app.add_middleware(GZipExceptStreams, streams=STREAM_PATHS)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        # a file upload: the file's own limit is checked by its route, this one bounds the form
        by_path={TRANSCRIPTIONS_PATH: settings.stt_max_upload_bytes + UPLOAD_FORM_OVERHEAD},
    )
    origins, origin_regex = settings.cors_allowed
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_origin_regex=origin_regex,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_RESPONSE_HEADERS,
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware)
    tracing.instrument_app(app)
    return app
