"""Behaviour every HTTP adapter shares: status mapping, cleanup, protocol errors, no key leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from gateway.errors import (
    UpstreamAuth,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.providers.base import StreamOutcome
from tests.conftest import CANARY_KEY, wire
from tests.unit.providers.helpers import URLS, chat, collect, make_adapter, mock

KINDS = ["openai", "anthropic", "gemini", "ollama"]
CAPTURES = {
    "openai": "openai/basic.sse",
    "anthropic": "anthropic/basic.sse",
    "gemini": "gemini/basic.sse",
    "ollama": "ollama/basic.ndjson",
}

STATUS_CASES = [
    (400, UpstreamRejected, 400, "upstream_rejected"),
    (401, UpstreamAuth, 502, "upstream_auth"),
    (403, UpstreamAuth, 502, "upstream_auth"),
    (404, UpstreamRejected, 400, "upstream_rejected"),
    (413, UpstreamRejected, 400, "upstream_rejected"),
    (422, UpstreamRejected, 400, "upstream_rejected"),
    (429, UpstreamRateLimited, 429, "upstream_rate_limited"),
    (500, UpstreamUnavailable, 502, "upstream_unavailable"),
    (503, UpstreamUnavailable, 502, "upstream_unavailable"),
    (529, UpstreamUnavailable, 502, "upstream_unavailable"),
]

ERROR_BODIES = {
    "openai": b'{"error":{"message":"Incorrect API key provided: %s.","type":"invalid_request_error"}}',
    "anthropic": b'{"type":"error","error":{"type":"overloaded_error","message":"key %s"},"request_id":"r"}',
    "gemini": b'[{"error":{"code":429,"message":"key %s","status":"RESOURCE_EXHAUSTED"}}]',
    "ollama": b'{"error":"key %s"}',
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("status", "error", "gateway_status", "type_"), STATUS_CASES)
async def test_adapter_maps_http_errors(
    respx_mock: respx.MockRouter,
    kind: str,
    status: int,
    error: type[UpstreamError],
    gateway_status: int,
    type_: str,
) -> None:
    body = ERROR_BODIES[kind] % CANARY_KEY.encode()
    respx_mock.post(URLS[kind]).mock(
        return_value=httpx.Response(
            status, content=body, headers={"content-type": "application/json", "retry-after": "7"}
        )
    )
    deltas, _, exc = await collect(make_adapter(kind))
    assert deltas == []
    assert isinstance(exc, error)
    assert (exc.status, exc.type) == (gateway_status, type_)
    assert CANARY_KEY not in exc.message
    assert "key" in exc.message  # the upstream's message, sanitised, is kept
    if status == 429:
        assert exc.retry_after == 7


@pytest.mark.parametrize("kind", KINDS)
async def test_adapter_html_error_page_from_a_proxy(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    respx_mock.post(URLS[kind]).mock(
        return_value=httpx.Response(
            503,
            content=b"<html><body>Service Unavailable</body></html>",
            headers={"content-type": "text/html"},
        )
    )
    _, _, exc = await collect(make_adapter(kind))
    assert isinstance(exc, UpstreamUnavailable)
    assert exc.message == "the upstream answered HTTP 503"


@pytest.mark.parametrize("kind", KINDS)
async def test_adapter_2xx_json_instead_of_a_stream_is_a_protocol_error(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    respx_mock.post(URLS[kind]).mock(
        return_value=httpx.Response(200, json={"id": "x", "choices": []})
    )
    _, _, exc = await collect(make_adapter(kind))
    assert isinstance(exc, UpstreamProtocolError)
    assert exc.type == "upstream_protocol"


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_adapter_2xx_json_error_body_is_that_error(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    respx_mock.post(URLS[kind]).mock(
        return_value=httpx.Response(
            200, json={"error": {"message": "model overloaded", "type": "server_error"}}
        )
    )
    _, _, exc = await collect(make_adapter(kind))
    assert isinstance(exc, UpstreamUnavailable)
    assert exc.message == "model overloaded"


@pytest.mark.parametrize("kind", KINDS)
async def test_adapter_truncated_stream_is_a_protocol_error(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    body = wire(CAPTURES[kind])
    cut = body[: len(body) * 2 // 3]  # no terminal signal
    mock(respx_mock, kind, [cut])
    deltas, _, exc = await collect(make_adapter(kind))
    assert deltas  # the text so far was relayed
    assert isinstance(exc, UpstreamProtocolError)


@pytest.mark.parametrize("kind", KINDS)
async def test_adapter_connection_reset_mid_stream_is_unavailable(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    body = wire(CAPTURES[kind])

    async def breaking() -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        raise httpx.RemoteProtocolError("peer closed connection")

    respx_mock.post(URLS[kind]).mock(
        return_value=httpx.Response(
            200,
            headers={"content-type": "text/event-stream application/x-ndjson"},
            content=breaking(),
        )
    )
    _, _, exc = await collect(make_adapter(kind))
    assert isinstance(exc, UpstreamUnavailable)


@pytest.mark.parametrize("kind", KINDS)
async def test_adapter_malformed_json_is_a_protocol_error(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    garbage = b"data: {not json\n\n" if kind != "ollama" else b"{not json\n"
    mock(respx_mock, kind, [garbage])
    _, _, exc = await collect(make_adapter(kind))
    assert isinstance(exc, UpstreamProtocolError)


@pytest.mark.parametrize("kind", KINDS)
async def test_adapter_connect_failure_and_timeouts(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    route = respx_mock.post(URLS[kind])
    route.side_effect = httpx.ConnectError("refused")
    assert isinstance((await collect(make_adapter(kind)))[2], UpstreamUnavailable)
    route.side_effect = httpx.ConnectTimeout("slow")
    assert isinstance((await collect(make_adapter(kind)))[2], UpstreamTimeout)
    route.side_effect = httpx.ReadTimeout("silent")
    assert isinstance((await collect(make_adapter(kind)))[2], UpstreamTimeout)


class EndlessStream(httpx.AsyncByteStream):
    """An upstream body that never ends by itself and records when it is closed."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.closed = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), 40):
            yield self.body[i : i + 40]
        self.waiting.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    async def aclose(self) -> None:
        self.closed.set()


@pytest.mark.parametrize("kind", KINDS)
async def test_adapter_aclose_after_one_delta_closes_the_upstream(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    upstream = EndlessStream(wire(CAPTURES[kind]))
    respx_mock.post(URLS[kind]).mock(
        return_value=httpx.Response(
            200,
            headers={"content-type": "text/event-stream application/x-ndjson"},
            stream=upstream,
        )
    )
    stream = make_adapter(kind).stream(chat(), StreamOutcome())
    assert await anext(stream)
    assert not upstream.closed.is_set()
    await stream.aclose()  # type: ignore[attr-defined]
    assert upstream.closed.is_set()


@pytest.mark.parametrize("kind", KINDS)
async def test_adapter_cancellation_while_waiting_closes_the_upstream(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    upstream = EndlessStream(b"")
    respx_mock.post(URLS[kind]).mock(
        return_value=httpx.Response(
            200,
            headers={"content-type": "text/event-stream application/x-ndjson"},
            stream=upstream,
        )
    )
    task = asyncio.ensure_future(anext(make_adapter(kind).stream(chat(), StreamOutcome())))
    await upstream.waiting.wait()  # the adapter is now blocked reading the endless body
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.closed.is_set()


@pytest.mark.parametrize("kind", ["anthropic", "gemini"])
async def test_adapter_without_a_key_fails_before_any_request(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    adapter = make_adapter(kind, api_key=None, api_key_env="NOT_SET_API_KEY")
    _, _, exc = await collect(adapter)
    assert isinstance(exc, UpstreamAuth)
    assert "NOT_SET_API_KEY" in exc.message
    assert not respx_mock.calls


async def test_adapter_gzip_encoded_stream_is_decoded(respx_mock: respx.MockRouter) -> None:
    import gzip

    body = gzip.compress(wire("openai/basic.sse"))
    respx_mock.post(URLS["openai"]).mock(
        return_value=httpx.Response(
            200,
            headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
            content=body,
        )
    )
    deltas, _, exc = await collect(make_adapter("openai"))
    assert exc is None
    assert "".join(deltas).startswith("The quick")


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_adapter_named_but_unset_key_variable_fails_before_any_request(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    adapter = make_adapter(kind, api_key=None, api_key_env="UNSET_API_KEY")
    _, _, exc = await collect(adapter)
    assert isinstance(exc, UpstreamAuth)
    assert "UNSET_API_KEY" in exc.message
    assert not respx_mock.calls
