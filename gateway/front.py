"""The gateway's one ASGI layer: the request's record and log line, and the streaming routes
called without FastAPI's middleware stack.

Every request passes FastAPI's own layers (server errors, telemetry, body limit, exceptions,
exit stacks), then the router walking its routes, then the route's exception wrapper: about
ten coroutine frames before the endpoint and three `send` wrappers on every body chunk, a
quarter of a stream's CPU under load (docs/PERFORMANCE.md). A route that needs none of it is
called from here: a `DirectRoute` whose endpoint and checks take only the request (each
answers its errors through the app's exception handlers) and whose path has no parameters.
Such a route is matched by method and exact path, and its scope gets what the router's match
would have put in it (the endpoint, the route, the dialect: found once, when the table is
built). Everything else (other paths, other methods, `OPTIONS` preflights, `/docs`) goes
through FastAPI as before: routing, documentation and error handling are FastAPI's.

The access record (`gateway.observability`) is made here for every request, FastAPI's or
not, and its line written when the request is over, after any error response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from fastapi import FastAPI, Request, Response
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.cors import SDKFriendlyCORS
from gateway.observability import (
    RECORD_KEY,
    RELAY_ROUTES,
    RequestRecord,
    finish,
    request_id_of,
)
from gateway.routing import DirectRoute

__all__ = ["GatewayApp"]

log = logging.getLogger("gateway")

Handler = Callable[[Request], Awaitable[Response]]


class GatewayApp(FastAPI):
    """FastAPI, behind the gateway's one layer (see the module's docstring)."""

    def __init__(self, cors_origins: Sequence[str] = (), **options: Any) -> None:
        super().__init__(**options)
        self.cors_origins = list(cors_origins)
        if self.cors_origins:  # for FastAPI's routes; the direct ones get it below
            self.add_middleware(SDKFriendlyCORS, allow_origins=self.cors_origins)
        self._direct: dict[tuple[str, str], DirectCall] | None = None
        self._direct_app: ASGIApp = self._call_direct
        if self.cors_origins:
            self._direct_app = SDKFriendlyCORS(self._call_direct, allow_origins=self.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        path = scope["path"]
        record = RequestRecord(request_id_of(scope), path, scope["method"], time.perf_counter())
        scope[RECORD_KEY] = record
        if path in RELAY_ROUTES:
            record.status = 200  # the relay routes set any other status themselves
        else:
            send = _status_recorder(record, send)
        try:
            if self._direct is None:
                self._direct = direct_routes(self)
            if (scope["method"], path) in self._direct:
                await self._direct_app(scope, receive, send)
            else:
                await super().__call__(scope, receive, send)
        finally:
            finish(self.state.metrics, record)

    async def _call_direct(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._direct is not None
        call = self._direct[scope["method"], scope["path"]]
        scope.update(call.scope)
        scope["path_params"] = {}
        scope["app"] = self
        request = Request(scope, receive, send)
        try:
            response = await call.handler(request)
        except Exception as exc:
            response = await self._handled(request, exc)
        await response(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """The response the app's exception handlers give (the catch-all logs the error)."""
        for kind in type(exc).__mro__:  # the nearest class with a handler, as Starlette does
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                response: Response = await handler(request, exc)  # type: ignore[misc]  # async
                return response
        raise exc


class DirectCall(NamedTuple):
    """A route this layer calls itself: its handler, and what the router's match puts in
    the scope (the endpoint, the route, the dialect), the same for every request."""

    handler: Handler
    scope: dict[str, Any]


def direct_routes(app: FastAPI) -> dict[tuple[str, str], DirectCall]:
    """(method, path) → the call, for each route this layer can call itself: only where
    FastAPI's router would pick that same route (its first full match), and only for a
    router included bare (the effective path and dependencies are the route's own)."""
    contexts = list(iter_route_contexts(app.routes))
    table: dict[tuple[str, str], DirectCall] = {}
    for context in contexts:
        route = context.original_route
        if not isinstance(route, DirectRoute) or route.param_convertors:
            continue
        if context.path != route.path or _dependencies(context) != route.dependencies:
            continue
        handler = route.direct_handler()
        if handler is None:
            continue
        for method in route.methods or ():
            chosen, child_scope = _first_full_match(contexts, method, route.path)
            if chosen is route:
                child_scope.pop("path_params", None)  # a fresh one per request
                table[method, route.path] = DirectCall(handler, child_scope)
    return table


def _dependencies(context: RouteContext) -> list[Any]:
    return list(getattr(context, "dependencies", None) or [])


def _first_full_match(
    contexts: list[RouteContext], method: str, path: str
) -> tuple[object, dict[str, Any]]:
    """The route FastAPI's router would call for this method and path, and its child scope."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for context in contexts:
        route = context.original_route
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            return route, dict(child_scope)
    return None, {}


def _status_recorder(record: RequestRecord, send: Send) -> Send:
    async def recording_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            record.status = message["status"]
        await send(message)

    return recording_send
