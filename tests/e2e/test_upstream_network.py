"""SPEC §5.1, the network around an upstream: TLS with private CAs and client certificates,
proxies from the environment and from configuration, and a connection that finished while
paused by back-pressure (small buffers, a realistic MSS). Real sockets, the real client."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import trustme

from gateway.providers._client import READ_BUFSIZE
from gateway.providers._http import build_client
from gateway.providers.base import ChatMessage, ChatRequest, StreamOutcome
from gateway.providers.openai import OpenAIProvider
from gateway.settings import load_settings
from tests.conftest import CANARY_KEY
from tests.e2e.raw import proxy_server, raw_upstream
from tests.e2e.test_upstream_wire import answering, body_of, error_of, gateway, stream

pytestmark = pytest.mark.e2e

PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*PROXY_VARIABLES, "SSL_CERT_FILE", "SSL_CERT_DIR"]:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_tls(ca: trustme.CA, *, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    return context


def openai_body() -> tuple[bytes, str, str]:
    return body_of("openai")


# -- TLS ------------------------------------------------------------------------------------


async def test_tls_private_ca_from_ssl_cert_file(
    ca: trustme.CA, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, content_type, expected = openai_body()
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    async with (
        raw_upstream(answering(content_type, body), tls=server_tls(ca)) as (_, url),
        gateway("openai", url) as http,
    ):
        response = await stream(http)
    assert (response.status_code, response.text) == (200, expected)


async def test_tls_private_ca_from_the_providers_ca_file(ca: trustme.CA, ca_file: str) -> None:
    body, content_type, expected = openai_body()
    async with (
        raw_upstream(answering(content_type, body), tls=server_tls(ca)) as (_, url),
        gateway("openai", url, ca_file=ca_file) as http,
    ):
        response = await stream(http)
    assert (response.status_code, response.text) == (200, expected)


async def test_tls_untrusted_certificate_says_so(
    ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    body, content_type, _ = openai_body()
    async with (
        raw_upstream(answering(content_type, body), tls=server_tls(ca)) as (upstream, url),
        gateway("openai", url) as http,
    ):
        response = await stream(http)
    assert response.status_code == 502
    error = error_of(response)
    assert error["type"] == "upstream_unavailable"
    assert "certificate was not trusted" in error["message"]
    assert url.removeprefix("https://") in error["message"]
    assert upstream.requests == []  # nothing, the key above all, went to it
    assert "not trusted" in caplog.text
    assert CANARY_KEY not in caplog.text


async def test_tls_client_certificate_for_mutual_tls(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    body, content_type, expected = openai_body()
    client_ca = trustme.CA()
    client = client_ca.issue_cert("gateway.client.test")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    tls = server_tls(ca, client_ca=client_ca)
    async with raw_upstream(answering(content_type, body), tls=tls) as (_, url):
        options = {"ca_file": ca_file, "client_cert": str(cert), "client_key": str(key)}
        async with gateway("openai", url, **options) as http:
            response = await stream(http)
        async with gateway("openai", url, ca_file=ca_file) as http:
            refused = await stream(http)
    assert (response.status_code, response.text) == (200, expected)
    assert refused.status_code == 502  # the server demanded a certificate


# -- proxies --------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
async def test_http_upstream_through_the_environments_proxy(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, content_type, expected = openai_body()
    async with (
        raw_upstream(answering(content_type, body)) as (upstream, url),
        proxy_server() as (proxy, proxy_url),
    ):
        monkeypatch.setenv(variable, proxy_url)
        async with gateway("openai", url) as http:
            response = await stream(http)
    assert (response.status_code, response.text) == (200, expected)
    assert proxy.seen == [f"POST {url}/v1/chat/completions HTTP/1.1".encode()]
    assert len(upstream.requests) == 1


async def test_https_upstream_through_the_environments_proxy_with_connect(
    ca: trustme.CA, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, content_type, expected = openai_body()
    async with (
        raw_upstream(answering(content_type, body), tls=server_tls(ca)) as (upstream, url),
        proxy_server() as (proxy, proxy_url),
    ):
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the wrong scheme's: unused
        async with gateway("openai", url, ca_file=ca_file) as http:
            response = await stream(http)
    assert (response.status_code, response.text) == (200, expected)
    authority = url.removeprefix("https://")
    assert proxy.seen == [f"CONNECT {authority} HTTP/1.1".encode()]
    assert len(upstream.requests) == 1  # inside the tunnel, with its key: the proxy saw
    assert b"\r\nauthorization: bearer " in upstream.requests[0].lower()  # only CONNECT


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
async def test_no_proxy_sends_the_named_hosts_direct(
    no_proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, content_type, expected = openai_body()
    async with (
        raw_upstream(answering(content_type, body)) as (upstream, url),
        proxy_server() as (proxy, proxy_url),
    ):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        async with gateway("openai", url) as http:
            response = await stream(http)
    assert (response.status_code, response.text) == (200, expected)
    assert proxy.seen == []
    assert len(upstream.requests) == 1


async def test_the_providers_own_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    body, content_type, expected = openai_body()
    async with (
        raw_upstream(answering(content_type, body)) as (_, url),
        proxy_server() as (proxy, proxy_url),
    ):
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the provider's wins
        async with gateway("openai", url, proxy=proxy_url) as http:
            response = await stream(http)
    assert (response.status_code, response.text) == (200, expected)
    assert len(proxy.seen) == 1


async def test_an_unreachable_proxy_names_the_upstream_and_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://user:{CANARY_KEY}@127.0.0.1:{dead}")
    async with gateway("openai", "http://upstream.test") as http:
        response = await stream(http)
    assert response.status_code == 502
    message = error_of(response)["message"]
    assert "upstream.test" in message
    assert "proxy" in message
    assert CANARY_KEY not in response.text


# -- a connection that finished while paused ------------------------------------------------


def small_buffers(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)


def small_receive_buffer(addr_info: object) -> socket.socket:
    family, type_, proto, _, _ = addr_info  # type: ignore[misc]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    return sock


def big_answer(events: int) -> tuple[bytes, str]:
    piece = "x" * 1900
    body = b"".join(
        b'data: {"choices":[{"index":0,"delta":{"content":"%b"}}]}\n\n' % piece.encode()
        for _ in range(events)
    )
    finish = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    return body + finish + b"data: [DONE]\n\n", piece * events


@pytest.fixture
def request_() -> Iterator[ChatRequest]:
    yield ChatRequest(model="m", messages=(ChatMessage("user", "hi"),))


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_big_answers_through_small_buffers_and_mss_reuse_one_connection(
    framing: str, request_: ChatRequest
) -> None:
    body, expected = big_answer(600)  # ~1.2 MB: far more than every buffer on the way
    async with raw_upstream(
        answering("text/event-stream", body, framing=framing), prepare=small_buffers
    ) as (upstream, url):
        settings = load_settings(
            providers={
                "up": {"type": "openai", "base_url": url, "api_key": CANARY_KEY},
            }
        )
        config = settings.providers["up"]
        client = build_client(config, socket_factory=small_receive_buffer)
        adapter = OpenAIProvider(config, client)  # type: ignore[arg-type]
        try:
            for _ in range(3):
                outcome = StreamOutcome()
                text = "".join(
                    [d async for batch in adapter.stream(request_, outcome) for d in batch]
                )
                assert text == expected
                assert outcome.finish_reason == "stop"
        finally:
            await client.aclose()
    assert len(upstream.requests) == 3
    assert upstream.connections == 1  # each answer came back on the same, reused connection


async def until_received(response: httpx.Response, size: int) -> aiohttp.ClientResponse:
    """Wait (a condition, polled, with a guard: aiohttp exposes no event for it) until the
    client holds `size` body bytes, unread; the aiohttp response under it."""
    inner: aiohttp.ClientResponse = response.stream._stream._response  # type: ignore[attr-defined]
    async with asyncio.timeout(10):
        while inner.content.total_bytes < size:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.001)
    return inner


async def test_a_response_that_finished_while_paused_leaves_a_usable_connection() -> None:
    # One byte over the high-water mark (twice READ_BUFSIZE), and nobody reads: the read
    # that completes the body also pauses the socket. Once it is read, the connection goes
    # back to the pool, and the next request on it must not hang (the old transport's bug,
    # which loopback's large segments hid).
    size = 2 * READ_BUFSIZE + 1
    body = b"data: " + b"x" * (size - 8) + b"\n\n"
    async with raw_upstream(answering("text/event-stream", body), prepare=small_buffers) as (
        upstream,
        url,
    ):
        config = load_settings(
            providers={
                "up": {"type": "openai", "base_url": url, "first_token_timeout": 5.0},
            }
        ).providers["up"]
        async with build_client(config, socket_factory=small_receive_buffer) as client:
            for _ in range(3):
                async with client.stream("POST", url, content=b"{}") as response:
                    inner = await until_received(response, size)
                    assert inner.connection is not None
                    assert inner.connection.protocol._reading_paused  # type: ignore[union-attr]
                    assert await response.aread() == body
    assert len(upstream.requests) == 3
    assert upstream.connections == 1  # the once-paused connection served every request
