"""`GET /metrics`: the Prometheus text format, on the API port unless a port of its own is set."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lipika.errors import NotFound
from lipika.kit.routing import api_router

router = api_router(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every metric family of this pod. With `LIPIKA_METRICS_PORT` set they are served there
    only, so an ingress in front of the API never publishes them."""
    if request.state.settings.metrics_port is not None:
        raise NotFound("metrics are served on LIPIKA_METRICS_PORT")
    return Response(generate_latest(request.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
