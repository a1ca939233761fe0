"""Routes whose endpoint takes the request and nothing else, called without FastAPI's
per-request dependency solving.

FastAPI matches a `DirectRoute`, documents it and turns its exceptions into responses exactly
as for any route; only the call differs. An endpoint `async def f(request: Request) ->
Response` whose dependencies are each `async def check(request: Request) -> None` (the
gateway's key check) is called directly: the dependencies in order, then the endpoint. The
handler FastAPI wraps around an endpoint (solving and caching dependencies, reading and
validating a body, serialising a response model: none of which such an endpoint uses) was
about a tenth of a one-chunk stream's CPU (docs/PERFORMANCE.md). An endpoint of any other
shape (path parameters, say) gets FastAPI's own handler.

Dependencies given to `include_router` are not seen here: the gateway includes its routers
bare, and gives every router its dependencies itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.params import Depends
from fastapi.routing import APIRoute

__all__ = ["DirectRoute"]

Endpoint = Callable[[Request], Awaitable[Response]]
Check = Callable[[Request], Awaitable[None]]


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.direct_handler() or super().get_route_handler()

    def direct_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]] | None:
        """The checks then the endpoint, when each takes only the request; else None."""
        calls = _direct_calls(self.endpoint, self.dependencies)
        if calls is None:
            return None
        endpoint, checks = calls

        async def handler(request: Request) -> Response:
            for check in checks:
                await check(request)
            return await endpoint(request)

        return handler


def _direct_calls(
    endpoint: Callable[..., Any], dependencies: Sequence[Depends]
) -> tuple[Endpoint, list[Check]] | None:
    """The endpoint and its checks when each takes just the request; None otherwise."""
    checks = [dependency.dependency for dependency in dependencies]
    if not all(callable(call) and _takes_only_the_request(call) for call in [endpoint, *checks]):
        return None
    return endpoint, checks  # type: ignore[return-value]  # shapes checked just above


def _takes_only_the_request(call: Callable[..., Any]) -> bool:
    if not inspect.iscoroutinefunction(call):
        return False
    parameters = list(inspect.signature(call, eval_str=True).parameters.values())
    if len(parameters) != 1:
        return False
    (parameter,) = parameters
    return parameter.kind in _POSITIONAL and parameter.annotation is Request


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
