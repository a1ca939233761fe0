"""The upstream client's own decisions: which proxy, and how aiohttp's errors read."""

from __future__ import annotations

import json
import os
import ssl
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import trustme
import yarl
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.providers._client import MalformedResponse, _environment_proxy, _mapped
from gateway.providers._http import (
    HTTPProviderConfig,
    UpstreamClient,
    drain_after_end,
    tls_context,
)
from gateway.settings import ConfigError, load_settings

URL = httpx.URL("https://api.example.com/v1/chat/completions")
PLAIN = httpx.URL("http://127.0.0.1:8080/api/chat")


@pytest.mark.parametrize(
    ("environment", "url", "proxy"),
    [
        ({}, URL, None),
        ({"https": "http://p:3128"}, URL, "http://p:3128"),
        ({"http": "http://p:3128"}, URL, None),  # the other scheme's proxy is not used
        ({"all": "http://p:3128"}, URL, "http://p:3128"),
        ({"https": "http://a:1", "all": "http://b:2"}, URL, "http://a:1"),
        ({"https": "p:3128"}, URL, "http://p:3128"),  # a bare host:port, as curl reads it
        ({"https": "http://p:1", "no": "example.com"}, URL, None),  # a domain suffix
        ({"https": "http://p:1", "no": ".example.com"}, URL, None),
        ({"https": "http://p:1", "no": "other.com"}, URL, "http://p:1"),
        ({"http": "http://p:1", "no": "127.0.0.1"}, PLAIN, None),
        ({"http": "http://p:1", "no": "*"}, PLAIN, None),
        ({"all": "socks5://p:1080"}, URL, None),  # not an HTTP proxy: direct, with a warning
    ],
)
def test_environment_proxy(environment: dict[str, str], url: httpx.URL, proxy: str | None) -> None:
    assert _environment_proxy(environment, url) == proxy


# By field name: aiohttp adds fields to this tuple between releases.
KEY = ConnectionKey(
    **dict.fromkeys(ConnectionKey._fields)
    | {"host": "api.example.com", "port": 443, "is_ssl": True, "ssl": True}
)
INFO = aiohttp.RequestInfo(
    yarl.URL("https://api.example.com/"),
    "POST",
    CIMultiDictProxy(CIMultiDict()),
    yarl.URL("https://api.example.com/"),
)


@pytest.mark.parametrize(
    ("error", "mapped", "reason"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout, "timed out connecting"),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout, "timed out reading"),
        (
            aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "Connect call failed")),
            httpx.ConnectError,
            "connection refused",
        ),
        (
            aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "Name or service not known")),
            httpx.ConnectError,
            "DNS lookup failed (name or service not known)",
        ),
        (
            aiohttp.ClientConnectorSSLError(KEY, ssl.SSLError(1, "wrong version number")),
            httpx.ConnectError,
            "the TLS handshake failed",
        ),
        (
            aiohttp.ClientProxyConnectionError(KEY, ConnectionRefusedError(111, "x")),
            httpx.ProxyError,
            "could not reach the proxy (connection refused)",
        ),
        (
            aiohttp.ClientHttpProxyError(INFO, (), status=407),
            httpx.ProxyError,
            "the proxy refused the tunnel (HTTP 407)",
        ),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError, "closed the connection"),
        (
            aiohttp.ClientPayloadError(
                "Response payload is not completed: <TransferEncodingError>. ConnectionResetError(104, 'x')"
            ),
            httpx.RemoteProtocolError,
            "connection reset mid-response",
        ),
        (
            aiohttp.ClientPayloadError("Response payload is not completed"),
            httpx.RemoteProtocolError,
            "broke off before its end",
        ),
        (
            aiohttp.ClientResponseError(INFO, (), status=400, message="Invalid header"),
            MalformedResponse,
            "malformed response (Invalid header)",
        ),
        (
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            httpx.ReadError,
            "connection reset by peer",
        ),
        (aiohttp.ClientError(), httpx.RemoteProtocolError, "ClientError"),
    ],
)
def test_aiohttp_errors_map_to_httpx_errors_with_a_reason(
    error: aiohttp.ClientError, mapped: type[httpx.HTTPError], reason: str
) -> None:
    request = httpx.Request("POST", "https://api.example.com/v1/chat/completions")
    result = _mapped(error, request)
    assert type(result) is mapped
    assert reason in str(result)
    assert result.request is request


def test_configuration_never_shows_a_proxy_password() -> None:
    settings = load_settings(
        providers={
            "up": {
                "type": "openai",
                "base_url": "https://api.example.com/v1",
                "proxy": "http://me:hunter2-secret@proxy.corp:3128",
            },
            "plain": {"type": "ollama", "proxy": "http://proxy.corp:3128"},
        }
    )
    shown = json.dumps(settings.model_dump(mode="json"))
    assert "hunter2-secret" not in shown
    assert "proxy.corp:3128" in shown
    assert settings.providers["up"].proxy == "http://me:hunter2-secret@proxy.corp:3128"


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ({"proxy": "socks5://proxy:1080"}, "http:// or https:// proxy URL"),
        ({"client_key": __file__}, "client_key needs client_cert"),
        ({"ca_file": "/no/such/ca.pem"}, "ca_file"),
    ],
)
def test_bad_network_options_fail_at_start_up(option: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(providers={"up": {"type": "openai", **option}})


class _Stream:
    def __init__(self, eof: bool) -> None:
        self.eof = eof

    def at_eof(self) -> bool:
        return self.eof


async def test_draining_after_the_end_reads_only_a_body_not_yet_at_its_end() -> None:
    read: list[bytes] = []

    async def chunks() -> AsyncIterator[bytes]:
        read.append(b"0\r\n\r\n")
        yield b""

    for eof, expected in ((True, []), (False, [b"0\r\n\r\n"])):
        read.clear()
        response = httpx.Response(200, stream=_Stream(eof))  # type: ignore[arg-type]
        body = chunks()
        await drain_after_end(body, response)
        assert read == expected
        await body.aclose()


def test_a_tls_context_is_built_once_for_the_same_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    config = HTTPProviderConfig(base_url="https://x.test", ca_file=str(ca_file))
    first = tls_context(config)
    assert tls_context(config) is first
    assert tls_context(HTTPProviderConfig(base_url="https://x.test")) is not first
    os.utime(ca_file, ns=(0, 0))  # the file changed on disk: read again
    assert tls_context(config) is not first


async def test_a_request_body_holds_its_bytes_and_no_more() -> None:
    """orjson's result keeps its 4 KiB working buffer; the request lives as long as its
    stream, so it carries an exact copy."""
    client = UpstreamClient(httpx.AsyncHTTPTransport(), httpx.Timeout(1))
    tracemalloc.start()
    try:
        request = client.post_json("http://x.test/v1", {"model": "m"}, {})
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        await client.aclose()
    assert request.content == b'{"model":"m"}'
    by_line = snapshot.filter_traces([tracemalloc.Filter(True, "*/gateway/providers/_http.py")])
    assert sum(stat.size for stat in by_line.statistics("filename")) < 2048
