"""Health and readiness (SPEC §4.4)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.errors import Unavailable
from gateway.metrics import CONTENT_TYPE_LATEST
from gateway.state import state_of

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    metrics = request.app.state.metrics
    metrics.asyncio_tasks.set(len(asyncio.all_tasks()))
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Configuration loaded and not draining; 503 once shutdown has begun."""
    if state_of(request).drain.draining:
        raise Unavailable("the gateway is shutting down")
    return JSONResponse({"status": "ready"})
