"""Health and readiness (SPEC §4.4)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.errors import Unavailable
from gateway.state import state_of

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Configuration loaded and not draining; 503 once shutdown has begun."""
    if state_of(request).drain.draining:
        raise Unavailable("the gateway is shutting down")
    return JSONResponse({"status": "ready"})
