"""DirectRoute: request-only endpoints are called without FastAPI's dependency solving, and
behave as FastAPI routes in every way a client can see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.testclient import TestClient

from gateway.routing import DirectRoute, _direct_calls

calls: list[str] = []


async def check(request: Request) -> None:
    calls.append("check")
    if request.headers.get("x-key") != "yes":
        raise HTTPException(401, "no key")


def app_with(router: APIRouter) -> TestClient:
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


router = APIRouter(dependencies=[Depends(check)], route_class=DirectRoute)


@router.post("/direct")
async def direct(request: Request) -> Response:
    calls.append("endpoint")
    return Response(await request.body(), media_type="text/plain")


@router.get("/items/{name}")
async def item(request: Request, name: str) -> Response:
    calls.append("endpoint")
    return Response(name, media_type="text/plain")


@pytest.fixture
def fastapi_handlers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each route whose requests FastAPI's own handler would serve (its handler is
    built when a route is made, so routes made after this fixture are the ones recorded)."""
    built: list[str] = []
    real = fastapi.routing.get_request_handler

    def recording(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        built.append(kwargs["dependant"].call.__name__)
        return real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "get_request_handler", recording)
    return built


def test_a_request_only_endpoint_is_called_directly_after_its_checks(
    fastapi_handlers: list[str],
) -> None:
    fresh = APIRouter(dependencies=[Depends(check)], route_class=DirectRoute)
    fresh.add_api_route("/direct", direct, methods=["POST"])
    fresh.add_api_route("/items/{name}", item, methods=["GET"])
    # The same answer FastAPI's handler would give, but not through it: only the route with a
    # path parameter was given FastAPI's handler.
    assert fastapi_handlers == ["item"]
    calls.clear()
    client = app_with(fresh)
    response = client.post("/direct", content=b"hello", headers={"x-key": "yes"})
    assert (response.status_code, response.text) == (200, "hello")
    assert calls == ["check", "endpoint"]


def test_a_failing_check_answers_through_the_exception_handlers_and_skips_the_endpoint() -> None:
    calls.clear()
    response = app_with(router).post("/direct", content=b"hello")
    assert response.status_code == 401
    assert response.json() == {"detail": "no key"}
    assert calls == ["check"]


def test_an_endpoint_with_other_parameters_gets_fastapis_own_handler() -> None:
    route = next(r for r in router.routes if getattr(r, "path", "") == "/items/{name}")
    assert _direct_calls(route.endpoint, route.dependencies) is None
    calls.clear()
    response = app_with(router).get("/items/abc", headers={"x-key": "yes"})
    assert (response.status_code, response.text) == (200, "abc")
    assert calls == ["check", "endpoint"]


def test_sync_or_differently_shaped_callables_are_not_direct() -> None:
    def sync(request: Request) -> Response:
        return Response()

    async def two(request: Request, other: int) -> Response:
        return Response()

    async def unannotated(request) -> Response:  # type: ignore[no-untyped-def]
        return Response()

    for endpoint in (sync, two, unannotated):
        assert _direct_calls(endpoint, []) is None
