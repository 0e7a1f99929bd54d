"""create_app(): the FastAPI application and the lifespan that owns every long-lived resource."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI

from lipika import __version__, migrate
from lipika.agent.runner import Agent
from lipika.apikeys.endpoints import router as api_keys_router
from lipika.auth.endpoints import router as auth_router
from lipika.billing.endpoints import router as billing_router
from lipika.billing.meter import build_meter
from lipika.billing.tasks import Reconciler, reconcile_forever
from lipika.chat.endpoints import router as chat_router
from lipika.checkpoint import CheckpointDB
from lipika.config import Settings
from lipika.db import create_engine, create_sessionmaker
from lipika.errors import install_error_handlers
from lipika.health import router as health_router
from lipika.kit.middleware import (
    BodySizeLimitMiddleware,
    GZipExceptStreams,
    RequestContextMiddleware,
)
from lipika.providers.registry import build_registry
from lipika.redis import create_redis
from lipika.threads.endpoints import router as threads_router
from lipika.threads.leases import RunLeases
from lipika.workspaces.endpoints import router as workspaces_router

log = structlog.get_logger()

# Routes that answer with server-sent events (and so bypass GZip).
STREAM_PATHS = re.compile(r"^/v1/(chat/completions|threads/[^/]+/messages)$")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        settings.signing_key  # noqa: B018  (create or read the embedded secret before serving)
        if settings.embedded:
            await asyncio.to_thread(migrate.upgrade, settings.app_db_url)
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        redis = create_redis(settings)
        checkpoint_db = await CheckpointDB.open(settings)
        meter = build_meter(settings, engine)
        providers = build_registry(settings)
        agent = await Agent.open(settings, meter, checkpoint_db, providers.providers)
        run_leases = RunLeases(sessionmaker, settings.run_lease_seconds)
        run_leases.start()
        reconciler = Reconciler(meter, sessionmaker)
        loop = asyncio.create_task(
            reconcile_forever(reconciler, redis, settings.reconcile_interval_seconds),
            name="reconcile",
        )
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
                "engine": engine,
                "sessionmaker": sessionmaker,
                "redis": redis,
                "checkpoint_db": checkpoint_db,
                "meter": meter,
                "providers": providers,
                "agent": agent,
                "run_leases": run_leases,
                "reconciler": reconciler,
            }
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            await agent.aclose()  # each stopped run releases its thread ...
            await run_leases.aclose()  # ... and this frees any this process still holds
            await meter.aclose()
            await providers.aclose()
            await checkpoint_db.close()
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(title="Lipika", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    routers = (
        health_router,
        auth_router,
        workspaces_router,
        api_keys_router,
        billing_router,
        chat_router,
        threads_router,
    )
    for router in routers:
        app.include_router(router)
    app.add_middleware(GZipExceptStreams, streams=STREAM_PATHS)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware)
    return app
