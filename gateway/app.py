"""The application factory: routes, error envelopes and the lifespan that owns the clients."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway import __version__
from gateway.api import router
from gateway.api._common import request_id
from gateway.auth import KeyRing
from gateway.errors import GatewayError
from gateway.lifecycle import Drain, drain_on_exit_signals
from gateway.limits import Limiter, build_store
from gateway.metrics import Metrics
from gateway.models import ModelTable
from gateway.observability import AccessLog, configure_logging, outcome_of, record_of
from gateway.providers import open_registry
from gateway.providers.base import Provider
from gateway.redis_client import connect
from gateway.resume import Generations, RedisLog, TokenSigner
from gateway.settings import Settings, load_settings
from gateway.state import GatewayState
from gateway.ui_chats import ChatStreams

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("gateway")


def create_app(settings: Settings, providers: Mapping[str, Provider] | None = None) -> FastAPI:
    """Build the app. `providers` replaces adapters by provider name (tests use it)."""
    drain = Drain()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _warn_if_open(settings, app.state.keys)
        redis = None
        if settings.redis_url:
            redis = connect(settings.redis_url, settings.redis_timeout_s, settings.redis_cluster)
        store = build_store(redis, settings.redis_timeout_s)
        limiter = Limiter(store, settings.redis_failure, settings.lease_ttl_s, metrics)
        generations = Generations(settings.resume, _resume_log(settings, redis), drain, metrics)
        chat_store = redis if generations.store is not None else None
        app.state.ui_chats = ChatStreams(
            chat_store, settings.redis_timeout_s, generations.store_failed
        )
        limiter.start()
        try:
            async with open_registry(settings.providers, providers) as registry:
                app.state.gateway = GatewayState(
                    settings,
                    registry,
                    ModelTable(settings, registry),
                    drain,
                    metrics,
                    limiter,
                    generations,
                )
                with drain_on_exit_signals(drain, settings.shutdown_grace_s):
                    yield
                await generations.close()
        finally:
            await limiter.stop()
            if redis is not None:
                await redis.aclose()

    app = FastAPI(title="LLM token relay gateway", version=__version__, lifespan=lifespan)
    app.state.drain = drain
    app.state.metrics = metrics = Metrics()
    app.state.keys = KeyRing(settings.keys)
    app.state.tokens = TokenSigner(settings.token_secret())
    app.add_middleware(AccessLog, metrics=metrics)
    if settings.cors.allow_origins:
        # Outermost, so preflights are answered without a key; exact origins only, and never
        # credentials (keys travel in headers, not cookies).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors.allow_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=600,
        )
    app.include_router(router)
    _install_error_handlers(app)
    return app


CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-API-Key",
    "Last-Event-ID",
    "X-Request-ID",
    "Accept",
]
CORS_EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-Gateway-Model",
    "X-Gateway-Provider",
    "X-Stream-ID",
    "X-Stream-Resumable",
    "Retry-After",
]


def _resume_log(settings: Settings, redis: Any) -> RedisLog | None:
    if redis is None:
        return None
    if settings.token_secret_env is None:
        log.warning(
            "redis_url is set but token_secret_env is not: EventSource tokens work only on "
            "the replica that issued them"
        )
    resume = settings.resume
    return RedisLog(
        redis, settings.redis_timeout_s, resume.resume_retention_s, resume.resume_max_bytes
    )


def _warn_if_open(settings: Settings, keys: KeyRing) -> None:
    if keys.open and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "no gateway keys are configured and the gateway listens on %s: anyone who can "
            "reach it can spend the configured providers' keys (see [keys] in the README)",
            settings.host,
        )


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from $GATEWAY_CONFIG and GATEWAY_* variables."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, settings.secrets())
    return create_app(settings)


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


def error_response(request: Request, status: int, type_: str, message: str) -> JSONResponse:
    """The error envelope of SPEC §4.2, in OpenAI's shape on /v1/* routes."""
    rid = request_id(request)
    if (record := record_of(request.scope)) is not None:
        record.status, record.error_type, record.outcome = status, type_, outcome_of(type_)
    if request.url.path.startswith("/v1/"):
        body = {"error": {"message": message, "type": type_, "param": None, "code": type_}}
    else:
        body = {"error": {"type": type_, "message": message, "request_id": rid}}
    return JSONResponse(body, status_code=status, headers={"X-Request-ID": rid})


async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
    response = error_response(request, exc.status, exc.type, exc.message)
    response.headers.update(exc.headers())
    return response


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(request, 422, "invalid_request", "invalid request")


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    kinds = {404: "not_found", 405: "method_not_allowed"}
    type_ = kinds.get(exc.status_code, "invalid_request")
    return error_response(request, exc.status_code, type_, str(exc.detail))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(request, 500, "internal_error", "internal error")
