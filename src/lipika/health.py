"""Liveness and readiness probes for Kubernetes."""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from lipika.kit.routing import api_router

router = api_router(tags=["health"])

_PROBE_TIMEOUT_SECONDS = 3


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """App database, checkpoint database and Redis all answer: ready for traffic."""
    state = request.state

    async def app_db() -> None:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    checks = {
        "database": app_db(),
        "checkpoint_database": state.checkpoint_db.ping(),
        "redis": state.redis.ping(),
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(c, _PROBE_TIMEOUT_SECONDS) for c in checks.values()),
        return_exceptions=True,
    )
    report = {
        name: "ok" if not isinstance(result, BaseException) else f"error: {type(result).__name__}"
        for name, result in zip(checks, results, strict=True)
    }
    ready = all(v == "ok" for v in report.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": report},
        status_code=200 if ready else 503,
    )
