"""The upstream HTTP client: aiohttp under httpx's API.

Adapters build and send `httpx.Request`s and read `response.aiter_bytes()`; this transport
carries them over an `aiohttp.ClientSession`, which does the HTTP itself (SPEC §5.1): proxies
with CONNECT, TLS, happy eyeballs, 1xx skipped, bodies delimited by length, chunks or close,
bounded header parsing, keep-alive pool hygiene and back-pressure. See docs/ARCHITECTURE.md,
"The upstream client", for why aiohttp and why through httpx's API.

What this module adds, and nothing else:
- aiohttp's exceptions mapped to httpx's, each saying why (refused, DNS, certificate not
  trusted, reset, ...) so that `_http.translate_errors()` can name host and reason;
- the read time-out lowered from the wait for the headers (`first_token_timeout`) to
  `idle_timeout` once the headers are in;
- a POST retried once on a new connection when a kept-alive connection turns out to have been
  closed by the server while idle, and no byte of a response came back (aiohttp retries only
  idempotent methods);
- response headers over 64 KiB in total are refused (aiohttp bounds their count and each
  field; the sum is checked here).

The body is handed on one network read at a time (`iter_any()`), never re-chunked.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import urllib.request
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from aiohttp.connector import Connection
from yarl import URL

log = logging.getLogger("gateway.upstream")

__all__ = ["MAX_HEADER_BYTES", "AiohttpTransport", "ClientOptions", "MalformedResponse"]

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 128
# Unread body per stream before the socket stops being read (aiohttp pauses at twice this):
# a slow client slows the upstream instead of growing the gateway's memory.
READ_BUFSIZE = 64 * 1024
# Idle pooled connections are dropped after this; below the 5 s that common servers (uvicorn,
# nginx's default is longer) keep an idle connection, so the pool rarely holds a dead one.
KEEPALIVE_S = 4.0
Origin = tuple[str, str, int | None]


class MalformedResponse(httpx.RemoteProtocolError):
    """The upstream broke HTTP itself: unparsable, or headers over the limit."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    max_connections: int
    connect_timeout: float
    headers_timeout: float  # the read time-out until the response headers are in
    idle_timeout: float  # ... and after
    proxy: str | None = None  # the provider's own proxy; else the environment's
    ssl_context: ssl.SSLContext | None = None


class _Attempt:
    """One try of a request: whether aiohttp handed it a kept-alive connection."""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


_ATTEMPT: ContextVar[_Attempt | None] = ContextVar("gateway_upstream_attempt", default=None)


class _Connector(aiohttp.TCPConnector):
    """Notes on the request's attempt whether its connection carried a request before.

    (A `TraceConfig` told the same with one callback, but made aiohttp build and await its
    eight trace signals, each with a parameters object, on every request.)
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._carried: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109  # the overridden method's signature
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        if protocol is not None:
            attempt = _ATTEMPT.get()
            if attempt is not None and protocol in self._carried:
                attempt.reused = True
            self._carried.add(protocol)
        return connection


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        options: ClientOptions,
        *,
        socket_factory: Callable[[Any], Any] | None = None,
    ) -> None:
        self._options = options
        self._socket_factory = socket_factory
        self._session: aiohttp.ClientSession | None = None
        # The environment is read once, at start-up, like every other setting.
        self._environment = {} if options.proxy else urllib.request.getproxies_environment()
        self._proxies: dict[Origin, str | None] = {}
        self._urls: dict[str, URL] = {}
        self._open_responses = 0

    def _open(self) -> aiohttp.ClientSession:
        options = self._options
        connector = _Connector(
            limit=options.max_connections,
            limit_per_host=0,
            ssl=options.ssl_context if options.ssl_context is not None else True,
            keepalive_timeout=KEEPALIVE_S,
            socket_factory=self._socket_factory,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # `connect` includes the wait for a pooled connection (SPEC §3).
            timeout=aiohttp.ClientTimeout(
                total=None, connect=options.connect_timeout, sock_read=options.headers_timeout
            ),
            trust_env=False,  # proxies are resolved here; no ~/.netrc credentials
            auto_decompress=False,  # httpx decodes, as it does for any transport
            cookie_jar=aiohttp.DummyCookieJar(),
            max_field_size=MAX_HEADER_BYTES,
            max_headers=MAX_HEADERS,
            read_bufsize=READ_BUFSIZE,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        try:
            response = await self._send(self._session, request)
        except aiohttp.ClientError as exc:
            raise _mapped(exc, request) from exc
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("timed out", request=request) from exc
        size = sum(len(name) + len(value) for name, value in response.raw_headers)
        if size > MAX_HEADER_BYTES:
            response.close()
            raise MalformedResponse(f"response headers over {MAX_HEADER_BYTES} bytes")
        connection = response.connection
        if connection is not None and connection.protocol is not None:
            # From here on, the read time-out is the silence allowed between body reads,
            # counted from now (the timer running was set, with the longer wait, when the
            # last bytes came; a body already complete has no timer, and gets none).
            protocol = connection.protocol
            protocol.read_timeout = self._options.idle_timeout
            if not response.content.is_eof():
                protocol.start_timeout()
        self._open_responses += 1
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(self, response, request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _send(
        self, session: aiohttp.ClientSession, request: httpx.Request
    ) -> aiohttp.ClientResponse:
        body = await request.aread()
        url = self._yarl_url(request.url)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        proxy = self._proxy_for(request.url)
        retried = False
        while True:
            attempt = _Attempt()
            _ATTEMPT.set(attempt)  # this task's own context: read by `_Connector.connect`
            try:
                return await session.request(
                    request.method,
                    url,
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                    proxy=proxy,
                )
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if retried or not attempt.reused or not _nothing_came_back(exc):
                    raise
                retried = True

    def _yarl_url(self, url: httpx.URL) -> URL:
        # Parsed once per upstream URL (a provider has one, Gemini one per model), not per
        # request; bounded in case a provider's URLs vary without end.
        key = str(url)
        found = self._urls.get(key)
        if found is None:
            if len(self._urls) >= 1024:
                self._urls.clear()
            found = self._urls[key] = URL(key, encoded=True)
        return found

    def _proxy_for(self, url: httpx.URL) -> str | None:
        if self._options.proxy:
            return self._options.proxy
        origin = (url.scheme, url.host, url.port)
        if origin not in self._proxies:
            self._proxies[origin] = _environment_proxy(self._environment, url)
        return self._proxies[origin]

    def open_connections(self) -> int:
        """Responses handed out and not closed yet (for tests: nothing may leak)."""
        return self._open_responses

    def _closed(self) -> None:
        self._open_responses -= 1

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _environment_proxy(environment: dict[str, str], url: httpx.URL) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY, else ALL_PROXY, unless NO_PROXY names the host."""
    proxy = environment.get(url.scheme) or environment.get("all")
    if not proxy:
        return None
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    # Untyped in typeshed, but public and documented with getproxies_environment().
    if urllib.request.proxy_bypass_environment(host, environment):  # type: ignore[attr-defined]
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy  # curl's reading of a bare host:port
    if not proxy.startswith(("http://", "https://")):
        # aiohttp speaks to HTTP proxies only; going direct is what a SOCKS-only environment
        # would get from most HTTP clients, and the log says why.
        log.warning("ignoring the environment's proxy for %s: not an http(s) proxy", url.host)
        return None
    return proxy


def _nothing_came_back(exc: Exception) -> bool:
    # aiohttp hands the partly parsed response, if any, as the disconnect's message.
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return isinstance(exc.message, str)
    return not isinstance(exc, aiohttp.ClientConnectorError)


class _Body(httpx.AsyncByteStream):
    __slots__ = ("_request", "_response", "_transport")

    def __init__(
        self,
        transport: AiohttpTransport,
        response: aiohttp.ClientResponse,
        request: httpx.Request,
    ) -> None:
        self._transport: AiohttpTransport | None = transport
        self._response = response
        self._request = request

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        """The next network read (an iterator, not a generator: one hop less per read, and
        nothing to close when the reader stops early)."""
        try:
            data = await self._response.content.readany()
        except aiohttp.ClientError as exc:
            raise _mapped(exc, self._request) from exc
        except TimeoutError as exc:  # pragma: no cover - aiohttp raises its own subclass
            raise httpx.ReadTimeout("timed out reading", request=self._request) from exc
        if not data:
            raise StopAsyncIteration
        return data

    def at_eof(self) -> bool:
        """Whether the whole body has been read."""
        return self._response.content.at_eof()

    async def aclose(self) -> None:
        if self._transport is None:
            return
        self._transport._closed()
        self._transport = None
        response = self._response
        if response.content.at_eof():
            response.release()  # a complete response: the connection may be reused
        else:
            response.close()  # abandoned mid-body: never reuse, hang up now


def _mapped(exc: BaseException, request: httpx.Request) -> httpx.HTTPError:
    """aiohttp's exception as httpx's, with a short reason a person can act on."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout("timed out connecting", request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout("timed out reading", request=request)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        detail = getattr(cause, "verify_message", None) or str(cause)
        return httpx.ConnectError(
            f"its TLS certificate was not trusted ({detail})", request=request
        )
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return httpx.ConnectError(f"the TLS handshake failed ({_reason(exc)})", request=request)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return httpx.ConnectError(f"DNS lookup failed ({_reason(exc)})", request=request)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return httpx.ProxyError(f"could not reach the proxy ({_reason(exc)})", request=request)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(
            f"the proxy refused the tunnel (HTTP {exc.status})", request=request
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(_reason(exc), request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(
            "the server closed the connection before the response", request=request
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(_payload_reason(exc), request=request)
    if isinstance(exc, aiohttp.ClientResponseError):
        return MalformedResponse(f"malformed response ({exc.message})", request=request)
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx.ReadError(_reason(exc), request=request)
    return httpx.RemoteProtocolError(type(exc).__name__, request=request)


def _reason(exc: OSError) -> str:
    """ "connection refused", "name or service not known"...: the OS's words for why."""
    error = getattr(exc, "os_error", exc)
    if isinstance(error, socket.gaierror) or not error.errno or error.errno < 0:
        text = error.strerror or str(error) or type(error).__name__
    else:  # asyncio's own text ("Connect call failed ('10.0.0.1', 443)") says less
        text = os.strerror(error.errno)
    return text[0].lower() + text[1:]


def _payload_reason(exc: aiohttp.ClientPayloadError) -> str:
    cause = exc.__cause__
    if isinstance(cause, ConnectionResetError) or "ConnectionResetError" in str(exc):
        return "connection reset mid-response"
    return "the response broke off before its end"
