"""Each dialect through a real gateway against a real upstream socket (the stub)."""

from __future__ import annotations

import logging

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import CANARY_KEY, settings_from, wire
from tests.e2e.conftest import wait_for
from tests.e2e.servers import Gate, Reply, UpstreamStub, serve

pytestmark = pytest.mark.e2e

CAPTURES = {
    "openai": (
        "openai/basic.sse",
        "text/event-stream",
        "The quick 😀 fox 中文 line\u2028sep nel\u0085!",
    ),
    "anthropic": ("anthropic/basic.sse", "text/event-stream", "Hello, wörld 😀"),
    "gemini": ("gemini/basic.sse", "text/event-stream", "The capital of Fränce is Paris. 🗼"),
    "ollama": ("ollama/basic.ndjson", "application/x-ndjson", "The sky 🌌 is\u2028blue\u0085"),
}
PATHS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/up-model:streamGenerateContent",
    "ollama": "/api/chat",
}


def gateway_settings(kind: str, upstream: str, **provider: object) -> str:
    base = upstream + "/v1" if kind == "openai" else upstream
    extra = "".join(f"{key} = {value!r}\n" for key, value in provider.items())
    return (
        f"[providers.up]\ntype = '{kind}'\nbase_url = '{base}'\napi_key = '{CANARY_KEY}'\n{extra}"
        "[models.m]\nprovider = 'up'\nmodel = 'up-model'\n"
    )


def pieces(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("kind", list(CAPTURES))
@pytest.mark.parametrize("size", [1, 7, 100_000])
async def test_dialect_relays_byte_exact_text(
    kind: str, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    capture, content_type, expected = CAPTURES[kind]
    stub = UpstreamStub(Reply(content_type=content_type, body=pieces(wire(capture), size)))
    caplog.set_level(logging.DEBUG)
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings(kind, upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/stream", json={"prompt": "hi", "model": "m"})
            sse = await http.post("/stream?format=sse", json={"prompt": "hi", "model": "m"})
    assert response.status_code == 200
    assert response.content == expected.encode()
    assert response.headers["x-gateway-provider"] == "up"
    assert '"finish_reason"' in sse.text.split("event: done")[1]
    assert stub.seen[0].path.startswith(PATHS[kind])
    assert CANARY_KEY not in response.text + sse.text + str(response.headers)
    assert CANARY_KEY not in caplog.text


ERRORS = [
    (400, 400, "upstream_rejected"),
    (401, 502, "upstream_auth"),
    (429, 429, "upstream_rate_limited"),
    (500, 502, "upstream_unavailable"),
    (529, 502, "upstream_unavailable"),
]


@pytest.mark.parametrize("kind", list(CAPTURES))
@pytest.mark.parametrize(("upstream_status", "status", "type_"), ERRORS)
async def test_dialect_maps_upstream_errors(
    kind: str, upstream_status: int, status: int, type_: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"error": {"message": "nope %s", "type": "x"}}' % CANARY_KEY.encode()
    stub = UpstreamStub(
        Reply(upstream_status, "application/json", [body], headers={"Retry-After": "3"})
    )
    caplog.set_level(logging.DEBUG)
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings(kind, upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/stream", json={"prompt": "hi", "model": "m"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["message"].startswith("nope")
    assert CANARY_KEY not in response.text
    assert CANARY_KEY not in caplog.text
    if upstream_status == 429:
        assert response.headers["retry-after"] == "3"


async def test_real_adapter_is_immediate_and_cancels_the_upstream_on_disconnect() -> None:
    gate = Gate()
    first = b'data: {"choices":[{"index":0,"delta":{"content":"first"}}]}\n\n'
    second = b'data: {"choices":[{"index":0,"delta":{"content":"second"}}]}\n\n'
    stub = UpstreamStub(Reply(body=[first, gate, second, Gate()]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings("openai", upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            async with http.stream("POST", "/stream", json={"prompt": "hi", "model": "m"}) as r:
                reads = r.aiter_raw()
                assert await anext(reads) == b"first"  # before the stub sends "second"
                gate.open()
                assert await anext(reads) == b"second"
            # The client left while the upstream was still open: the gateway hangs up too.
            await wait_for(stub.hung_up)
            assert app.state.gateway.drain.active == set()
