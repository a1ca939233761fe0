"""SPEC §4.4 traces on real sockets: the gateway exports with the SDK's BatchSpanProcessor and
OTLP/HTTP exporter to a real receiver (tests/e2e/otlp.py) that decodes the protobuf. Each test
waits for its requests' log lines (written once a request has fully ended), then flushes the
exporter: no sleeping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from tests.conftest import CANARY_KEY, FAST_FAKE, settings_from
from tests.e2e.conftest import GatedProvider, RequestsLogged
from tests.e2e.otlp import CLIENT, ERROR, SERVER, UNSET, OTLPReceiver, ReceivedSpan
from tests.e2e.servers import Break, Gate, Reply, UpstreamStub, serve
from tests.e2e.test_ui_stream import read_until

pytestmark = pytest.mark.e2e

PROMPT = "the secret plan for tuesday"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
USAGE = b'{"prompt_tokens":11,"completion_tokens":3}'


def chunk(text: str) -> bytes:
    return b'data: {"model":"m-2025","choices":[{"index":0,"delta":{"content":%b}}]}\n\n' % (
        json.dumps(text).encode()
    )


END = (
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"choices":[],"usage":%b}\n\ndata: [DONE]\n\n' % USAGE
)


def provider(name: str, upstream: str) -> str:
    return (
        f"[providers.{name}]\ntype = 'openai'\nbase_url = '{upstream}/v1'\n"
        f"api_key = '{CANARY_KEY}'\n"
    )


def tracing(receiver: str, capture: bool = False) -> str:
    return f"[tracing]\nendpoint = '{receiver}'\ncapture_content = {str(capture).lower()}\n"


@asynccontextmanager
async def receiving() -> AsyncIterator[tuple[OTLPReceiver, str]]:
    receiver = OTLPReceiver()
    async with serve(receiver) as url:
        yield receiver, url


async def flush(app: FastAPI) -> None:
    # force_flush blocks until the exporter's thread has posted to the receiver, which runs
    # on this event loop: so from another thread.
    assert await asyncio.to_thread(app.state.gateway.tracing.force_flush)


def texts_in(spans: list[ReceivedSpan]) -> str:
    return json.dumps([span.attributes for span in spans])


async def plain_stream(capture: bool) -> tuple[OTLPReceiver, UpstreamStub, httpx.Response]:
    stub = UpstreamStub(Reply(body=[chunk("Hello"), chunk(" world"), END]))
    with RequestsLogged() as logged:
        async with receiving() as (receiver, otlp), serve(stub) as upstream:
            settings = settings_from(
                tracing(otlp, capture) + provider("up", upstream) + "[models.chat]\n"
                "provider = 'up'\nmodel = 'm'\n"
            )
            app = create_app(settings)
            async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
                response = await http.post(
                    "/stream",
                    json={"prompt": PROMPT, "model": "chat", "max_tokens": 50},
                    headers={"traceparent": TRACEPARENT},
                )
                await logged.reach(1)
                await flush(app)
    return receiver, stub, response


async def test_a_plain_stream_is_a_server_span_and_an_attempt_span_continuing_the_client() -> None:
    receiver, stub, response = await plain_stream(capture=False)
    assert response.text == "Hello world"
    [server] = [span for span in receiver.spans if span.kind == SERVER]
    [attempt] = [span for span in receiver.spans if span.kind == CLIENT]
    assert server.name == "POST /stream"
    assert (server.trace_id, server.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert server.attributes["gen_ai.operation.name"] == "chat"
    assert server.attributes["gen_ai.request.model"] == "chat"  # what the client asked for
    assert server.attributes["gen_ai.response.model"] == "m-2025"  # what the upstream said
    assert server.attributes["gen_ai.usage.input_tokens"] == 11
    assert server.attributes["gen_ai.usage.output_tokens"] == 3
    assert server.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert server.attributes["http.response.status_code"] == 200
    assert server.events == ["gen_ai.first_token"]
    assert server.status == UNSET
    assert attempt.name == "chat m"
    assert (attempt.trace_id, attempt.parent_span_id) == (CLIENT_TRACE, server.span_id)
    assert attempt.attributes["gen_ai.provider.name"] == "openai"
    assert attempt.attributes["gen_ai.request.model"] == "m"
    assert attempt.attributes["gen_ai.request.max_tokens"] == 50
    assert attempt.attributes["gateway.provider"] == "up"
    assert attempt.status == UNSET
    assert server.resource["service.name"] == "llm-token-relay"
    assert receiver.posts == ["/v1/traces"]
    # The upstream saw the attempt's context: the client's trace, the attempt span as parent.
    assert stub.seen[0].headers["traceparent"] == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"
    assert PROMPT not in texts_in(receiver.spans)
    assert "Hello" not in texts_in(receiver.spans)


async def test_capture_content_puts_the_prompt_and_the_answer_in_the_attempt_span() -> None:
    receiver, _, _ = await plain_stream(capture=True)
    [attempt] = [span for span in receiver.spans if span.kind == CLIENT]
    messages = json.loads(attempt.attributes["gen_ai.input.messages"])
    assert messages == [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    answer = json.loads(attempt.attributes["gen_ai.output.messages"])
    assert answer == [{"role": "assistant", "parts": [{"type": "text", "content": "Hello world"}]}]


async def test_a_fallback_shows_two_attempt_spans_the_first_failed() -> None:
    broken = UpstreamStub(Reply(503, "application/json", [b'{"error":{"message":"down"}}']))
    healthy = UpstreamStub(Reply(body=[chunk("from b"), END]))
    with RequestsLogged() as logged:
        async with receiving() as (receiver, otlp), serve(broken) as a, serve(healthy) as b:
            settings = settings_from(
                tracing(otlp)
                + provider("a", a)
                + provider("b", b)
                + "[models.main]\nprovider='a'\nmodel='ma'\nfallbacks=['backup']\n"
                + "[models.backup]\nprovider='b'\nmodel='mb'\n"
            )
            app = create_app(settings)
            async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
                response = await http.post("/stream", json={"prompt": "x", "model": "main"})
                await logged.reach(1)
                await flush(app)
    assert response.text == "from b"
    [server] = [span for span in receiver.spans if span.kind == SERVER]
    failed, served = receiver.named("chat ma") + receiver.named("chat mb")
    assert failed.parent_span_id == served.parent_span_id == server.span_id
    assert failed.status == ERROR
    assert failed.attributes["error.type"] == "upstream_unavailable"
    assert served.status == UNSET
    assert served.attributes["gateway.model"] == "backup"
    assert server.attributes["gateway.model"] == "backup"
    assert server.status == UNSET
    # Each attempt carried its own span upstream, in the same trace.
    assert broken.seen[0].headers["traceparent"].split("-")[1:3] == [
        server.trace_id,
        failed.span_id,
    ]
    assert healthy.seen[0].headers["traceparent"].split("-")[2] == served.span_id


async def test_a_mid_stream_failure_marks_both_spans_as_errors() -> None:
    stub = UpstreamStub(Reply(body=[chunk("partial"), Break()]))
    with RequestsLogged() as logged:
        async with receiving() as (receiver, otlp), serve(stub) as upstream:
            app = create_app(settings_from(tracing(otlp) + provider("up", upstream)))
            async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
                response = await http.get(
                    "/stream", params={"prompt": "x", "model": "up/m", "format": "sse"}
                )
                await logged.reach(1)
                await flush(app)
    assert "event: error" in response.text
    [server] = [span for span in receiver.spans if span.kind == SERVER]
    [attempt] = [span for span in receiver.spans if span.kind == CLIENT]
    assert server.name == "GET /stream"
    assert server.events == ["gen_ai.first_token"]
    for span in (server, attempt):
        assert span.status == ERROR
        assert span.attributes["error.type"] == "upstream_unavailable"  # the broken body
        assert span.attributes["gateway.outcome"] == "upstream_error"


async def test_a_request_that_fails_before_its_first_delta_is_an_error_span() -> None:
    broken = UpstreamStub(Reply(503, "application/json", [b'{"error":{"message":"down"}}']))
    with RequestsLogged() as logged:
        async with receiving() as (receiver, otlp), serve(broken) as upstream:
            app = create_app(settings_from(tracing(otlp) + provider("up", upstream)))
            async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
                await http.get("/healthz")
                await http.get("/metrics")
                response = await http.post(
                    "/v1/chat/completions",
                    json={"model": "up/m", "messages": [{"role": "user", "content": "hi"}]},
                )
                await logged.reach(3)
                await flush(app)
    assert response.status_code == 502
    [server] = [span for span in receiver.spans if span.kind == SERVER]
    [attempt] = [span for span in receiver.spans if span.kind == CLIENT]
    assert server.name == "POST /v1/chat/completions"  # /healthz and /metrics made none
    assert server.status == attempt.status == ERROR
    assert server.attributes["http.response.status_code"] == 502
    assert server.attributes["error.type"] == "upstream_unavailable"
    assert server.events == []  # no first token


async def test_a_resumed_stream_links_the_reconnection_and_the_request_that_started_it() -> None:
    gate = Gate()
    stub = UpstreamStub(Reply(body=[chunk("one "), chunk("two "), gate, chunk("three"), END]))
    with RequestsLogged() as logged:
        async with receiving() as (receiver, otlp), serve(stub) as upstream:
            settings = settings_from(
                tracing(otlp) + provider("up", upstream) + "[models.chat]\nprovider='up'\n"
            )
            app = create_app(settings)
            async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
                params = {"prompt": "x", "model": "chat", "format": "sse", "resumable": "true"}
                async with http.stream("GET", "/stream", params=params) as first:
                    stream_id = first.headers["x-stream-id"]
                    lines = first.aiter_lines()
                    while not (await anext(lines)).startswith("id: "):
                        pass  # one event read, then the client drops
                await logged.reach(1)
                headers = {"Last-Event-ID": f"{stream_id}:0"}
                async with http.stream("GET", "/stream", headers=headers) as resumed:
                    lines = resumed.aiter_lines()
                    while not (await anext(lines)).startswith("id: "):
                        pass  # the replayed event: this reader is attached
                    gate.open()  # the rest comes live
                    rest = "\n".join([line async for line in lines])
                await logged.reach(2)
                await flush(app)
    assert resumed.status_code == 200
    assert "three" in rest and "event: done" in rest
    servers = [span for span in receiver.spans if span.kind == SERVER]
    [start] = [span for span in servers if "gateway.resumed" not in span.attributes]
    [reconnection] = [span for span in servers if span.attributes.get("gateway.resumed")]
    assert reconnection.links == [(start.trace_id, start.span_id)]
    assert start.links == [(reconnection.trace_id, reconnection.span_id)]
    assert start.attributes["gen_ai.usage.output_tokens"] == 3  # the generation's own end
    assert reconnection.attributes["gateway.outcome"] == "complete"


async def test_with_tracing_off_nothing_is_exported_and_no_traceparent_goes_upstream() -> None:
    stub = UpstreamStub(Reply(body=[chunk("hi"), END]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(provider("up", upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post(
                "/stream",
                json={"prompt": "x", "model": "up/m"},
                headers={"traceparent": TRACEPARENT},
            )
            assert app.state.gateway.tracing is None
    assert response.text == "hi"
    assert "traceparent" not in stub.seen[0].headers


async def test_a_resumed_ui_chat_is_a_span_linked_to_the_request_that_started_it() -> None:
    provider = GatedProvider(("one ", "two ", "three"))
    chat = {
        "id": "chat-1",
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
    }
    with RequestsLogged() as logged:
        async with receiving() as (receiver, otlp):
            app = create_app(settings_from(tracing(otlp) + FAST_FAKE), {"fake": provider})
            async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
                provider.gates[0].set()
                async with http.stream("POST", "/ui/chat", json=chat) as first:
                    await read_until(first.aiter_raw(), b"text-delta")
                async with http.stream("GET", "/ui/chat/chat-1/stream") as resumed:
                    chunks = resumed.aiter_raw()
                    await read_until(chunks, b"text-delta")
                    provider.open_all()
                    body = b"".join([chunk async for chunk in chunks])
                await logged.reach(2)
                await flush(app)
    assert b'"type":"finish"' in body
    servers = [span for span in receiver.spans if span.kind == SERVER]
    [start] = [span for span in servers if span.name == "POST /ui/chat"]
    [resume] = [span for span in servers if span.name == "GET /ui/chat/{chat_id}/stream"]
    assert resume.links == [(start.trace_id, start.span_id)]
    assert start.links == [(resume.trace_id, resume.span_id)]
    assert resume.attributes["gateway.outcome"] == "complete"
