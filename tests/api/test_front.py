"""The gateway's one ASGI layer (gateway.front): the streaming routes are called without
FastAPI's middleware stack, exactly where FastAPI's router would have called them, and answer
their errors through the same handlers."""

from __future__ import annotations

import logging

import pytest
from fastapi import APIRouter, Request, Response

from gateway.app import create_app
from gateway.front import GatewayApp, direct_routes
from gateway.routing import DirectRoute
from tests.conftest import FAST_FAKE, app_client, settings_from

DIRECT = {
    ("POST", "/stream"),
    ("GET", "/stream"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/messages"),
    ("GET", "/v1/models"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/audio/speech"),
    ("POST", "/ui/chat"),
    ("POST", "/ui/completion"),
    ("POST", "/stream/tokens"),
}


def test_the_routes_called_directly_are_the_streaming_ones() -> None:
    assert set(direct_routes(create_app(settings_from(FAST_FAKE)))) == DIRECT


async def test_a_stream_never_enters_fastapis_middleware_stack() -> None:
    async with app_client(settings_from(FAST_FAKE)) as (http, app):
        response = await http.post("/stream", json={"prompt": "x"})
        assert response.status_code == 200 and response.text.startswith("Rick:")
        refused = await http.post("/v1/chat/completions", content=b"{")
        assert refused.status_code == 422  # invalid JSON, in OpenAI's envelope
        assert refused.json()["error"]["type"] == "invalid_request"
        assert app.middleware_stack is None  # Starlette builds it on its first request
        assert (await http.get("/healthz")).status_code == 200
        assert app.middleware_stack is not None


def test_a_path_an_earlier_route_would_take_is_left_to_fastapi() -> None:
    async def endpoint(request: Request) -> Response:
        return Response()

    first, second = APIRouter(route_class=DirectRoute), APIRouter(route_class=DirectRoute)
    first.add_api_route("/x/{name}", endpoint, methods=["POST"])
    second.add_api_route("/x/y", endpoint, methods=["POST", "PUT"])
    app = GatewayApp()
    app.include_router(first)
    app.include_router(second)
    assert set(direct_routes(app)) == {("PUT", "/x/y")}  # POST /x/y is /x/{name}'s


class _Exploding:
    @property
    def open(self) -> bool:
        raise RuntimeError("boom")


async def test_an_unexpected_error_is_a_500_in_the_routes_envelope_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with app_client(settings_from(FAST_FAKE)) as (http, app):
        app.state.keys = _Exploding()
        response = await http.post("/v1/messages", json={"model": "story"})
    assert response.status_code == 500
    assert response.json()["type"] == "error"  # Anthropic's envelope
    assert response.json()["error"]["type"] == "api_error"
    assert "unexpected error on /v1/messages" in caplog.text
    (line,) = [r for r in caplog.records if r.name == "gateway.access"]
    assert line.fields["status"] == 500  # type: ignore[attr-defined]
