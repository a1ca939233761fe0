"""The application factory: routes, error envelopes and the lifespan that owns the clients."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway import __version__
from gateway.api import ROUTERS, playground
from gateway.api._common import request_id
from gateway.auth import KeyRing
from gateway.balancer import Balancer
from gateway.cooldowns import Cooldowns
from gateway.dialects import NATIVE, Dialect, dialect_of
from gateway.dialects.openai import OPENAI
from gateway.errors import GatewayError, InvalidRequest, MethodNotAllowed, ModelError, NotFound
from gateway.front import GatewayApp
from gateway.lifecycle import Drain, drain_on_exit_signals
from gateway.limits import Clock, Limiter, build_store
from gateway.metrics import Metrics
from gateway.models import ModelTable, deployment_providers
from gateway.observability import configure_logging, outcome_of, record_of
from gateway.providers import open_registry
from gateway.providers.base import Provider, ProviderSettings
from gateway.redis_client import connect
from gateway.response_ids import ResponseIds
from gateway.resume import Generations, RedisLog, TokenSigner
from gateway.resume.chats import ChatStreams
from gateway.retention import Retained
from gateway.settings import Settings, load_settings
from gateway.state import GatewayState
from gateway.tracing import build_tracing

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("gateway")


def create_app(
    settings: Settings,
    providers: Mapping[str, Provider] | None = None,
    clock: Clock = time.time,
) -> FastAPI:
    """Build the app. `providers` replaces adapters by provider name, and `clock` the wall
    clock of the rate limits' one-minute windows and of the cooldowns (tests use both)."""
    drain = Drain()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _warn_if_open(settings, app.state.keys)
        redis = None
        if settings.redis_url:
            redis = connect(settings.redis_url, settings.redis_timeout_s, settings.redis_cluster)
        store = build_store(redis, settings.redis_timeout_s, clock)
        limiter = Limiter(store, settings.redis_failure, settings.lease_ttl_s, metrics)
        retained = Retained(settings.resume.resume_retained_max_bytes, metrics)
        generations = Generations(
            settings.resume, _resume_log(settings, redis), drain, metrics, retained
        )
        chat_store = redis if generations.store is not None else None
        app.state.ui_chats = ChatStreams(
            chat_store, settings.redis_timeout_s, generations.store_failed
        )
        app.state.response_ids = response_ids = ResponseIds(
            retained, settings.responses_retention_s, redis, settings.redis_timeout_s
        )
        cooldowns = Cooldowns(clock, redis, settings.redis_timeout_s, metrics)
        tracing = build_tracing(settings.tracing)
        limiter.start()
        try:
            configs, overrides = _registry_configs(settings, providers)
            async with open_registry(configs, overrides) as registry:
                balancer = Balancer(cooldowns)
                cooldowns.on_refresh = balancer.show_cooling
                app.state.gateway = GatewayState(
                    settings,
                    registry,
                    ModelTable(settings, registry, balancer, metrics),
                    drain,
                    metrics,
                    limiter,
                    generations,
                    retained,
                    tracing,
                )
                cooldowns.start()
                with drain_on_exit_signals(drain, settings.shutdown_grace_s):
                    yield
                await generations.close()
        finally:
            await cooldowns.stop()
            if tracing is not None:
                # Exports what is still queued: blocking, so off the event loop.
                await asyncio.to_thread(tracing.shutdown)
            await limiter.stop()
            await response_ids.settled()
            if redis is not None:
                await redis.aclose()

    app = GatewayApp(
        # Outermost, so preflights are answered without a key.
        cors_origins=settings.cors.allow_origins,
        title="LLM token relay gateway",
        version=__version__,
        lifespan=lifespan,
        # Served by gateway.api.docs instead, behind the key like every other route.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # The gateway makes its own spans (gateway.tracing, SPEC §4.4): FastAPI's native
        # telemetry would add a second span per request, /healthz included, whenever a global
        # provider exists or FASTAPI_OTEL_AUTO_CONFIGURE=true.
        telemetry={"auto_configure": False, "tracing": False, "metrics": False, "logs": False},
    )
    app.state.drain = drain
    app.state.metrics = metrics = Metrics(settings.models)
    app.state.keys = KeyRing(settings.keys)
    app.state.tokens = TokenSigner(settings.token_secret())
    for router in ROUTERS:
        app.include_router(router)
    if settings.playground:
        app.include_router(playground.router)
    _install_error_handlers(app)
    return app


def _registry_configs(
    settings: Settings, overrides: Mapping[str, Provider] | None
) -> tuple[dict[str, ProviderSettings], dict[str, Provider]]:
    """The providers to build: the configured ones, plus one per deployment with time-outs of
    its own (an override of its provider's adapter, given by a test, applies to it too)."""
    configs: dict[str, ProviderSettings] = dict(settings.providers)
    adapters = dict(overrides or {})
    for name, (base, config) in deployment_providers(settings).items():
        configs[name] = config
        if base in adapters:
            adapters[name] = adapters[base]
    return configs, adapters


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
    app = create_app(settings)
    settle_heap()
    return app


def settle_heap() -> None:
    """Hide what start-up built (modules, schemas, routes: it lives as long as the process)
    from the garbage collector. Its full collections then walk only what requests allocate:
    with the start-up heap in view, each took tens of milliseconds, paid by whichever request
    happened to trigger it (docs/PERFORMANCE.md)."""
    gc.collect()
    gc.freeze()


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


def error_response(request: Request, error: GatewayError) -> JSONResponse:
    """The error envelope of the dialect the route speaks (SPEC §4.2, §4.3, §4.7)."""
    rid = request_id(request)
    reply = _dialect(request).error_reply(error, rid)
    if (record := record_of(request.scope)) is not None:
        record.status, record.error_type = reply.status, error.type
        record.outcome = outcome_of(error.type)
    headers = {**reply.headers, "X-Request-ID": rid}
    return JSONResponse(reply.body, status_code=reply.status, headers=headers)


def _dialect(request: Request) -> Dialect:
    # Routes say which dialect they speak; a path that matched no route (404) is answered
    # in OpenAI's shape under /v1/, where OpenAI clients probe, else in the gateway's own.
    found = dialect_of(request.scope)
    if found is not None:
        return found
    return OPENAI if request.url.path.startswith("/v1/") else NATIVE


async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
    if isinstance(exc, ModelError) and (record := record_of(request.scope)) is not None:
        record.requested_model = _loggable(exc.model)
    return error_response(request, exc)


def _loggable(name: str) -> str:
    """A client-chosen name, safe on a text log line (no line breaks, bounded)."""
    return name[:256] if name.isprintable() else repr(name[:256])


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(request, InvalidRequest("invalid request"))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    kinds: dict[int, type[GatewayError]] = {404: NotFound, 405: MethodNotAllowed}
    error = kinds.get(exc.status_code, InvalidRequest)(str(exc.detail))
    error.status = exc.status_code
    return error_response(request, error)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(request, GatewayError("internal error"))
