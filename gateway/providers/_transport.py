"""A lean HTTP/1.1 transport for httpx, built for many long-lived streaming responses.

Why not httpcore's pool: profiling the gateway under load (see docs/PERFORMANCE.md) put a
quarter of its CPU in httpcore's connection-pool bookkeeping (a scan over every connection,
with a socket-readability syscall per idle one, twice per request), and several percent more in
its layered body iteration. This transport keeps httpx's API (adapters use `client.send(...,
stream=True)` and `response.aiter_bytes()` as before) and does only what the gateway needs:

- HTTP/1.1 over asyncio protocols, parsed by httptools (uvicorn's parser);
- a LIFO keep-alive pool per origin; connections go back only after a complete response;
- `max_connections` requests in flight at once (waiting counts toward the pool time-out);
- the read time-out is looked up at every wait, so `open_stream` can lower it from
  `first_token_timeout` to `idle_timeout` once the headers are in;
- back-pressure: above 64 KiB of unread body the socket stops being read, so a slow client
  slows the upstream instead of filling memory;
- httpx's own exception types, so `translate_errors()` maps them as before.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

__all__ = ["StreamingTransport"]

HIGH_WATER = 64 * 1024
KEEPALIVE_EXPIRY_S = 5.0
# Idle connections kept per origin. A burst of N streams needs N connections, but keeping them
# all afterwards would hold N sockets (and the upstream's resources) for nothing.
MAX_IDLE_PER_ORIGIN = 100
Origin = tuple[str, str, int]


class _Connection(asyncio.Protocol):
    """One upstream connection: feeds httptools, buffers body chunks for one reader."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: Any = None
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.error: Exception | None = None
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        """Ready for the next response on this connection (a fresh parser per message)."""
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.keep_alive = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[bool] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"malformed upstream response: {exc}")
            self.transport.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # llhttp answers this reliably only inside a callback (as uvicorn also does).
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # the reader's side
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def _wait(self, seconds: float | None) -> bool:
        """Wait for the protocol to make progress; False when `seconds` pass first.

        A bare timer rather than asyncio.timeout(): this runs once per network read, and the
        timer resolving the waiter (instead of cancelling the task) keeps a time-out apart
        from a real cancellation.
        """
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(seconds, _expire, waiter) if seconds is not None else None
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()
        return bool(waiter.result())

    async def read_head(self, request: httpx.Request) -> None:
        while not self.head_done:
            self._raise_if_broken(request, "before the response headers")
            if not await self._wait(_timeout(request, "read")):
                raise httpx.ReadTimeout(
                    "timed out waiting for the response headers", request=request
                )

    async def read_body(self, request: httpx.Request) -> bytes:
        """The next body bytes; b"" at the end of the message."""
        while not self.chunks:
            if self.complete:
                return b""
            self._raise_if_broken(request, "in the response body")
            if not await self._wait(_timeout(request, "read")):
                raise httpx.ReadTimeout("timed out reading the response body", request=request)
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        return data

    def _raise_if_broken(self, request: httpx.Request, where: str) -> None:
        if self.error is not None:
            raise self.error
        if self.closed:
            raise httpx.RemoteProtocolError(
                f"the upstream closed the connection {where}", request=request
            )

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _timeout(request: httpx.Request, key: str) -> float | None:
    timeouts = request.extensions.get("timeout")
    return timeouts.get(key) if isinstance(timeouts, dict) else None


class _Body(httpx.AsyncByteStream):
    def __init__(
        self, transport: StreamingTransport, connection: _Connection, request: httpx.Request
    ) -> None:
        self._transport = transport
        self._connection = connection
        self._request = request
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection, request = self._connection, self._request
        while data := await connection.read_body(request):
            yield data

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._transport.release(self._connection)


class StreamingTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = min(max_connections, MAX_IDLE_PER_ORIGIN)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._ssl = ssl_context
        self._open: set[_Connection] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._take_slot(request)
        try:
            connection = await self._send(request)
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_Body(self, connection, request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _take_slot(self, request: httpx.Request) -> None:
        try:
            async with asyncio.timeout(_timeout(request, "pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(
                "no upstream connection free in time", request=request
            ) from None

    async def _send(self, request: httpx.Request) -> _Connection:
        payload = await _serialise(request)
        connection = self._reuse(_origin(request.url))
        if connection is not None:
            try:
                return await self._exchange(connection, payload, request)
            except (httpx.RemoteProtocolError, OSError):
                # A kept-alive connection the server had just closed: one fresh try, as
                # nothing of this request can have been processed.
                if connection.status:
                    raise
        connection = await self._connect(request)
        return await self._exchange(connection, payload, request)

    async def _exchange(
        self, connection: _Connection, payload: bytes, request: httpx.Request
    ) -> _Connection:
        self._open.add(connection)
        try:
            connection.transport.write(payload)
            await connection.read_head(request)
        except BaseException:
            self._discard(connection)
            raise
        return connection

    def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            fresh = now - connection.idle_since < KEEPALIVE_EXPIRY_S
            if not connection.closed and connection.error is None and fresh:
                connection._reset()
                return connection
            connection.close()
        return None

    async def _connect(self, request: httpx.Request) -> _Connection:
        url = request.url
        origin = _origin(url)
        loop = asyncio.get_running_loop()
        tls = None
        if origin[0] == "https":
            tls = self._ssl or httpx.create_ssl_context()
            self._ssl = tls
        try:
            async with asyncio.timeout(_timeout(request, "connect")):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin),
                    origin[1],
                    origin[2],
                    ssl=tls,
                    server_hostname=origin[1] if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return connection

    def release(self, connection: _Connection) -> None:
        """The response is closed: keep the connection if it is clean, else close it."""
        self._slots.release()
        self._open.discard(connection)
        if connection.reusable():
            idle = self._idle.setdefault(connection.origin, [])
            now = time.monotonic()
            while idle and now - idle[0].idle_since >= KEEPALIVE_EXPIRY_S:
                idle.pop(0).close()  # the oldest sit at the front (LIFO reuse from the back)
            if len(idle) < self._max_idle:
                connection.idle_since = now
                idle.append(connection)
                return
        connection.close()

    def _discard(self, connection: _Connection) -> None:
        self._open.discard(connection)
        connection.close()

    def open_connections(self) -> int:
        """Connections serving a response now (for tests and metrics)."""
        return len(self._open)

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _origin(url: httpx.URL) -> Origin:
    port = url.port or (443 if url.scheme == "https" else 80)
    return (url.scheme, url.host, port)


async def _serialise(request: httpx.Request) -> bytes:
    body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
    lines = [b"%b %b HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
    lines += [b"%b: %b\r\n" % (name, value) for name, value in request.headers.raw]
    if body and "content-length" not in request.headers:
        lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)
