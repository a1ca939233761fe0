"""SPEC §5.1 through the real gateway and its real upstream client, against a byte-level
upstream on a real socket (tests/e2e/raw.py): framings, interim responses, breaks after the
end marker, wrong shapes, header and line limits, stale keep-alive, errors that name the host
and the reason."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import CANARY_KEY, settings_from, wire
from tests.e2e.raw import LAST_CHUNK, Conn, RawUpstream, Script, chunk, head, raw_upstream
from tests.e2e.servers import serve
from tests.e2e.test_providers import CAPTURES, gateway_settings

pytestmark = pytest.mark.e2e

KINDS = list(CAPTURES)
STORY_FALLBACK = "[providers.fake]\ntype = 'fake'\nchunk_delay_ms = 0\n"


def body_of(kind: str) -> tuple[bytes, str, str]:
    capture, content_type, expected = CAPTURES[kind]
    return wire(capture), content_type, expected


@asynccontextmanager
async def gateway(
    kind: str, upstream: str, extra: str = "", **provider: object
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_from(gateway_settings(kind, upstream, **provider) + extra)
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as http,
    ):
        yield http


def answering(content_type: str, *bodies: bytes, framing: str = "length") -> Script:
    """Answer each request with the next body (the last one repeats), framed as asked."""
    queue = list(bodies)

    async def script(conn: Conn) -> None:
        while await conn.request() is not None:
            body = queue.pop(0) if len(queue) > 1 else queue[0]
            if framing == "length":
                await conn.send(head(content_type=content_type, length=len(body)) + body)
            elif framing == "chunked":
                await conn.send(head(content_type=content_type, chunked=True))
                await conn.send(chunk(body) + LAST_CHUNK)
            else:  # close-delimited: HTTP/1.1 without a length, or HTTP/1.0
                version = "1.0" if framing == "http/1.0" else "1.1"
                await conn.send(head(content_type=content_type, version=version) + body)
                return

    return script


async def stream(http: httpx.AsyncClient, fmt: str = "text") -> httpx.Response:
    return await http.post(f"/stream?format={fmt}", json={"prompt": "hi", "model": "m"})


def error_of(response: httpx.Response) -> dict[str, str]:
    error: dict[str, str] = response.json()["error"]
    return error


# -- framings and interim responses ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("framing", ["length", "chunked", "close", "http/1.0"])
async def test_every_body_framing_relays_the_whole_answer(kind: str, framing: str) -> None:
    body, content_type, expected = body_of(kind)
    async with (
        raw_upstream(answering(content_type, body, framing=framing)) as (_, url),
        gateway(kind, url) as http,
    ):
        response = await stream(http)
        again = await stream(http)  # a second request, on a kept-alive or a new connection
    assert (response.status_code, response.text) == (200, expected)
    assert (again.status_code, again.text) == (200, expected)


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
    ],
)
async def test_interim_responses_are_skipped(interim: bytes) -> None:
    body, content_type, expected = body_of("openai")

    async def script(conn: Conn) -> None:
        while await conn.request() is not None:
            await conn.send(interim)
            await conn.send(head(content_type=content_type, length=len(body)) + body)

    async with raw_upstream(script) as (_, url), gateway("openai", url) as http:
        response = await stream(http)
    assert (response.status_code, response.text) == (200, expected)


async def test_a_redirect_is_not_followed_and_is_a_protocol_error() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(
            head(302, "text/html", length=0, extra=b"location: http://elsewhere.test/\r\n")
        )

    async with raw_upstream(script) as (upstream, url), gateway("openai", url) as http:
        response = await stream(http)
    assert response.status_code == 502
    assert error_of(response)["type"] == "upstream_protocol"
    assert "302" in error_of(response)["message"]
    assert len(upstream.requests) == 1


# -- the end marker ends the answer ---------------------------------------------------------


def broken_after(content_type: str, body: bytes, *, reset: bool = False) -> Script:
    """Send the whole body in a chunked response, then break the connection instead of
    sending the last chunk: a FIN that cuts the framing, or a reset (RST). Bytes queued
    before a reset are still delivered by the kernel; the reset comes after them."""

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(head(content_type=content_type, chunked=True) + chunk(body))
        if reset:
            conn.reset()
        else:
            await conn.close()

    return script


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("route", ["sse", "v1"])
@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_a_connection_broken_after_the_end_marker_is_a_complete_answer(
    kind: str, route: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    body, content_type, expected = body_of(kind)
    caplog.set_level(logging.DEBUG)
    async with (
        raw_upstream(broken_after(content_type, body, reset=how == "reset")) as (_, url),
        gateway(kind, url) as http,
    ):
        if route == "sse":
            response = await stream(http, "sse")
            assert "event: error" not in response.text
            assert "event: done" in response.text
            text = "".join(
                json.loads(line[6:])
                for line in response.text.split("\n")
                if line.startswith("data: ") and line[6:7] == '"'
            )
        elif kind == "openai":  # /v1/chat/completions would take the native path (no stream)
            response = await http.post(
                "/v1/messages",
                json={
                    "model": "m",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            text = response.json()["content"][0]["text"]
        else:
            response = await http.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
            text = response.json()["choices"][0]["message"]["content"]
    assert response.status_code == 200
    assert text == expected
    if kind != "ollama":  # (its capture's last line has no newline: no read after it)
        assert "broke after the end of the answer" in caplog.text  # at debug, not an error


async def test_a_connection_broken_before_the_end_marker_is_still_an_error() -> None:
    body, content_type, _ = body_of("openai")
    cut = body[: body.index(b"data: [DONE]")]
    cut = cut[: cut.rindex(b"data: ", 0, len(cut) - 2)]  # drop the finish chunk too
    async with (
        raw_upstream(broken_after(content_type, cut)) as (_, url),
        gateway("openai", url) as http,
    ):
        response = await stream(http, "sse")
    assert "event: error" in response.text


# -- wrong shapes ---------------------------------------------------------------------------

GOOD_FIRST = {
    "openai": b'data: {"choices":[{"index":0,"delta":{"content":"first"}}]}\n\n',
    "anthropic": b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"first"}}\n\n',
    "gemini": b'data: {"candidates":[{"content":{"parts":[{"text":"first"}]}}]}\n\n',
    "ollama": b'{"message":{"content":"first"},"done":false}\n',
}
# A proper end after the bad event: an adapter that skipped the bad event instead of failing
# would answer a clean (shortened) stream, and the tests below would see it.
END = {
    "openai": b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n",
    "anthropic": b'event: message_delta\ndata: {"delta":{"stop_reason":"end_turn"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    "gemini": b'data: {"candidates":[{"content":{"parts":[{"text":"end"}]},'
    b'"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1}}\n\n',
    "ollama": b'{"message":{"content":"end"},"done":true,"done_reason":"stop"}\n',
}
BAD_SHAPES = {
    "openai": [
        b'data: {"choices":[{"delta":"x"}]}\n\n',
        b'data: {"choices":5}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":5}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":[{"type":"text","text":{"a":1}}]}}]}\n\n',
        b'data: {"choices":["x"]}\n\n',
        b'data: {"usage":"lots"}\n\n',
        b"data: [1, 2]\n\n",
    ],
    "anthropic": [
        b'event: content_block_delta\ndata: {"delta":"x"}\n\n',
        b'event: content_block_delta\ndata: {"delta":{"type":"text_delta","text":5}}\n\n',
        b'event: message_start\ndata: {"message":"x"}\n\n',
        b'event: message_delta\ndata: {"usage":{"output_tokens":"six"}}\n\n',
        b'event: content_block_delta\ndata: "text"\n\n',
    ],
    "gemini": [
        b'data: {"candidates":5}\n\n',
        b'data: {"candidates":[{"content":{"parts":[{"text":5}]}}]}\n\n',
        b'data: {"candidates":["x"]}\n\n',
        b'data: {"candidates":[{"content":"x"}]}\n\n',
        b'data: {"usageMetadata":{"promptTokenCount":"x"}}\n\n',
        b"data: 7\n\n",
    ],
    "ollama": [
        b'{"message":"x","done":false}\n',
        b'{"message":{"content":5},"done":false}\n',
        b'{"message":{"content":["a"]},"done":false}\n',
        b'{"done":true,"eval_count":"many"}\n',
        b"5\n",
    ],
}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_wrong_shape_before_the_first_delta_is_a_protocol_error(kind: str) -> None:
    _, content_type, _ = body_of(kind)
    shapes = [shape + END[kind] for shape in BAD_SHAPES[kind]]
    async with raw_upstream(answering(content_type, *shapes)) as (_, url):
        async with gateway(kind, url) as http:
            plain = [await stream(http) for _ in shapes]
        fallback = "[models.m2]\nprovider = 'up'\nfallbacks = ['story']\n" + STORY_FALLBACK
        async with gateway(kind, url, fallback) as http:
            rescued = [
                await http.post("/stream", json={"prompt": "hi", "model": "m2"}) for _ in shapes
            ]
    for response in plain:
        assert response.status_code == 502, response.text
        assert error_of(response)["type"] == "upstream_protocol"
    for response in rescued:
        assert response.status_code == 200
        assert response.headers["x-gateway-model"] == "story"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_wrong_shape_after_the_first_delta_is_an_in_band_error(kind: str) -> None:
    _, content_type, _ = body_of(kind)
    bodies = [GOOD_FIRST[kind] + shape + END[kind] for shape in BAD_SHAPES[kind]]
    fallback = "[models.m2]\nprovider = 'up'\nfallbacks = ['story']\n" + STORY_FALLBACK
    async with (
        raw_upstream(answering(content_type, *bodies)) as (_, url),
        gateway(kind, url, fallback) as http,
    ):
        for model in ["m", "m2"]:  # with a fallback too: nothing is retried after the commit
            for _ in bodies:
                response = await http.post(
                    "/stream?format=sse", json={"prompt": "hi", "model": model}
                )
                assert response.status_code == 200
                events = [e for e in response.text.split("\n\n") if e]
                assert events[0].startswith('data: "first"'), response.text
                assert events[-1].startswith("event: error")
                assert '"type":"upstream_protocol"' in events[-1]


# -- limits: headers and lines --------------------------------------------------------------


def header_flood(total: int, *, field: int) -> Script:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        line = b"x-filler-%09d: " + b"v" * field + b"\r\n"
        sent = 0
        while sent < total:
            await conn.send(line % sent)
            sent += len(line)
        await conn.send(b"content-length: 0\r\n\r\n")

    return script


@pytest.mark.parametrize(
    ("total", "field"),
    [(4 * 1024 * 1024, 1000), (4 * 1024 * 1024, 4 * 1024 * 1024), (100 * 1024, 1000)],
    ids=["4MiB-of-headers", "one-4MiB-header", "100KiB-of-headers"],
)
async def test_response_headers_over_64_kib_are_a_protocol_error(total: int, field: int) -> None:
    async with (
        raw_upstream(header_flood(total, field=field)) as (_, url),
        gateway("openai", url, first_token_timeout=30.0) as http,
    ):
        response = await stream(http)
    assert response.status_code == 502
    assert error_of(response)["type"] == "upstream_protocol"  # not a time-out: at once
    assert "127.0.0.1" in error_of(response)["message"]


async def test_response_headers_under_64_kib_are_fine() -> None:
    body, content_type, expected = body_of("openai")

    async def script(conn: Conn) -> None:
        while await conn.request() is not None:
            filler = b"".join(b"x-filler-%d: %b\r\n" % (i, b"v" * 1000) for i in range(50))
            await conn.send(head(content_type=content_type, length=len(body), extra=filler))
            await conn.send(body)

    async with raw_upstream(script) as (_, url), gateway("openai", url) as http:
        response = await stream(http)
    assert (response.status_code, response.text) == (200, expected)


HUGE = 64 * 1024 * 1024


def endless_line(kind: str, first: bytes = b"") -> Script:
    _, content_type, _ = body_of(kind)
    opening = b"" if kind == "ollama" else b"data: "

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(head(content_type=content_type) + first + opening)
        piece = b"x" * 65536
        while conn.sent < HUGE:
            await conn.send(piece)

    return script


@pytest.mark.parametrize("kind", KINDS)
async def test_a_64_mib_line_fails_promptly_with_bounded_memory(kind: str) -> None:
    async with (
        raw_upstream(endless_line(kind)) as (upstream, url),
        gateway(kind, url, first_token_timeout=30.0) as http,
    ):
        response = await stream(http)
        await wait_done(upstream)
    assert response.status_code == 502
    assert error_of(response)["type"] == "upstream_protocol"
    assert "max_event_bytes" in error_of(response)["message"]
    # The gateway hung up long before the line's end: it never held more than its bound
    # plus the socket buffers.
    assert upstream.done[0].sent < HUGE // 4


async def test_a_long_line_after_the_first_delta_is_an_in_band_error() -> None:
    async with (
        raw_upstream(endless_line("openai", GOOD_FIRST["openai"])) as (upstream, url),
        gateway("openai", url, max_event_bytes=65536) as http,
    ):
        response = await stream(http, "sse")
        await wait_done(upstream)
    events = [e for e in response.text.split("\n\n") if e]
    assert events[0].startswith('data: "first"')
    assert '"type":"upstream_protocol"' in events[-1]
    assert upstream.done[0].sent < HUGE // 4


async def wait_done(upstream: RawUpstream) -> None:
    async with asyncio.timeout(10):
        while not upstream.done:
            await upstream.finished.wait()


# -- keep-alive -----------------------------------------------------------------------------


def stale_second_request(content_type: str, body: bytes, *, partial: bytes = b"") -> Script:
    """Connection 0 answers once, then reads the next request and closes without a byte
    (or after `partial` bytes); every later connection answers normally."""

    async def script(conn: Conn) -> None:
        if conn.index > 0:
            await answering(content_type, body)(conn)
            return
        await conn.request()
        await conn.send(head(content_type=content_type, length=len(body)) + body)
        await conn.request()
        if partial:
            await conn.send(partial)
        await conn.close()

    return script


async def test_a_kept_alive_connection_closed_by_the_server_is_retried_once() -> None:
    body, content_type, expected = body_of("openai")
    async with (
        raw_upstream(stale_second_request(content_type, body)) as (upstream, url),
        gateway("openai", url) as http,
    ):
        first, second = await stream(http), await stream(http)
    assert (first.status_code, first.text) == (200, expected)
    assert (second.status_code, second.text) == (200, expected)
    assert (len(upstream.requests), upstream.connections) == (3, 2)


async def test_no_retry_once_a_byte_of_the_response_came_back() -> None:
    body, content_type, _ = body_of("openai")
    script = stale_second_request(content_type, body, partial=b"HTTP/1.1 200 OK\r\ncontent-")
    async with raw_upstream(script) as (upstream, url), gateway("openai", url) as http:
        first, second = await stream(http), await stream(http)
    assert first.status_code == 200
    assert second.status_code == 502
    assert error_of(second)["type"] == "upstream_unavailable"
    assert len(upstream.requests) == 2  # the POST was not sent again


async def test_no_retry_on_a_fresh_connection_closed_without_an_answer() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.close()

    async with raw_upstream(script) as (upstream, url), gateway("openai", url) as http:
        response = await stream(http)
    assert response.status_code == 502
    assert error_of(response)["type"] == "upstream_unavailable"
    assert len(upstream.requests) == 1


# -- errors name the host and the reason ----------------------------------------------------


async def test_a_refused_connection_names_host_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.INFO)
    async with gateway("openai", f"http://127.0.0.1:{port}") as http:
        response = await stream(http)
    assert response.status_code == 502
    message = error_of(response)["message"]
    assert error_of(response)["type"] == "upstream_unavailable"
    assert f"127.0.0.1:{port}" in message
    assert "refused" in message
    assert message in caplog.text
    assert CANARY_KEY not in caplog.text + response.text


async def test_a_failed_dns_lookup_names_host_and_reason() -> None:
    async with gateway("openai", "http://no-such-host.invalid") as http:
        response = await stream(http)
    assert response.status_code == 502
    assert "no-such-host.invalid" in error_of(response)["message"]
    assert "DNS" in error_of(response)["message"]


async def test_a_reset_connection_names_host_and_reason() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.reset()

    async with raw_upstream(script) as (_, url), gateway("openai", url) as http:
        response = await stream(http)
    assert response.status_code == 502
    message = error_of(response)["message"]
    assert url.removeprefix("http://") in message
    assert "reset" in message


# -- SSE framing split between CR and LF, through the real client ---------------------------

CRLF_SPLITS = {
    # (first delta's bytes up to a CR, the rest after its LF): the second half must be read
    # as the same event (a multi-line data: joined, an event name kept).
    "openai": (
        b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\r\n\r\n'
        b'data: {"choices":[{"index":0,"delta":{"content":\r',
        b'\ndata: "b"}}]}\r\n\r\ndata: [DONE]\r\n\r\n',
    ),
    "anthropic": (
        b'event: content_block_delta\r\ndata: {"delta":{"type":"text_delta","text":"a"}}\r\n'
        b"\r\nevent: content_block_delta\r",
        b'\ndata: {"delta":{"type":"text_delta","text":"b"}}\r\n\r\n'
        b'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n',
    ),
    "gemini": (
        b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]}}]}\r\n\r\n'
        b'data: {"candidates":[{"content":{"parts":[{"text":"b"}]},\r',
        b'\ndata: "finishReason":"STOP"}]}\r\n\r\n',
    ),
    "ollama": (
        b'{"message":{"content":"a"},"done":false}\r\n{"message":{"content":"b"},"done":false}\r',
        b'\n{"message":{"content":""},"done":true,"done_reason":"stop"}\r\n',
    ),
}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_read_that_ends_between_cr_and_lf_changes_nothing(kind: str) -> None:
    before, after = CRLF_SPLITS[kind]
    _, content_type, _ = body_of(kind)
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(head(content_type=content_type, chunked=True) + chunk(before))
        await release.wait()  # the gateway has relayed "a": it has read up to the CR
        await conn.send(chunk(after) + LAST_CHUNK)

    async with raw_upstream(script) as (_, url), gateway(kind, url) as http:
        async with http.stream("POST", "/stream", json={"prompt": "hi", "model": "m"}) as r:
            reads = r.aiter_raw()
            assert await anext(reads) == b"a"
            release.set()
            rest = b"".join([piece async for piece in reads])
    assert rest == b"b"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_reset_mid_answer_is_an_in_band_error_naming_host_and_reason(kind: str) -> None:
    _, content_type, _ = body_of(kind)
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(head(content_type=content_type, chunked=True) + chunk(GOOD_FIRST[kind]))
        await release.wait()  # the gateway has relayed the first delta
        conn.reset()

    async with raw_upstream(script) as (_, url), gateway(kind, url) as http:
        async with http.stream(
            "POST", "/stream?format=sse", json={"prompt": "hi", "model": "m"}
        ) as response:
            reads = response.aiter_text()
            assert (await anext(reads)).startswith('data: "first"')
            release.set()
            rest = "".join([piece async for piece in reads])
    assert "event: error" in rest
    assert '"type":"upstream_unavailable"' in rest
    assert url.removeprefix("http://") in rest
    assert "reset" in rest
