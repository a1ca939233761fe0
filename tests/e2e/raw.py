"""A byte-level upstream on a real socket, for what a well-behaved HTTP server never does.

Each accepted connection runs a script (`async def script(conn)`) that reads requests and
writes whatever bytes it likes: interim responses, close-delimited bodies, headers without
end, a reset after the end marker. Also a tiny forwarding/CONNECT proxy for the proxy tests.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

Script = Callable[["Conn"], Awaitable[None]]
Running = dict[asyncio.Task[None], asyncio.StreamWriter]  # a connection's task, its writer


@dataclass
class Conn:
    index: int  # 0 for the first connection accepted, 1 for the next...
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    upstream: RawUpstream
    sent: int = 0

    async def request(self) -> bytes | None:
        """One whole request (head and Content-Length body); None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        self.upstream.requests.append(head + body)
        self.upstream.requested.set()
        return head + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.sent += len(data)

    def reset(self) -> None:
        """Close with a TCP reset (RST) instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


@dataclass
class RawUpstream:
    script: Script
    requests: list[bytes] = field(default_factory=list)
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    connections: int = 0
    done: list[Conn] = field(default_factory=list)  # connections whose script has finished
    errors: list[BaseException] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # set as each one ends
    running: Running = field(default_factory=dict)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(self.connections, reader, writer, self)
        self.connections += 1
        _track(self.running, writer)
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError, RuntimeError) as exc:
            self.errors.append(exc)  # the gateway hung up: often the point of the test
        finally:
            self.done.append(conn)
            self.finished.set()
            writer.transport.abort()


@asynccontextmanager
async def raw_upstream(
    script: Script,
    *,
    tls: ssl.SSLContext | None = None,
    prepare: Callable[[socket.socket], None] | None = None,
) -> AsyncIterator[tuple[RawUpstream, str]]:
    """Serve `script` on 127.0.0.1:<free port>; yields the upstream and its base URL."""
    upstream = RawUpstream(script)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:  # closed here if the server never takes it over (the server closes it after that)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if prepare is not None:
            prepare(sock)
        sock.bind(("127.0.0.1", 0))
        server = await asyncio.start_server(upstream._serve, sock=sock, ssl=tls)
    except BaseException:
        sock.close()
        raise
    scheme = "https" if tls else "http"
    try:
        yield upstream, f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.close()
        await _stop(upstream.running)
        await server.wait_closed()


def _track(running: Running, writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    assert task is not None
    running[task] = writer
    task.add_done_callback(lambda done: running.pop(done, None))


async def _stop(running: Running) -> None:
    """End the connections still open (python 3.11 has no close_clients()): abort them, so
    that their scripts end on a connection error rather than a cancellation, which 3.11's
    stream server would report as an unhandled error."""
    for writer in list(running.values()):
        writer.transport.abort()
    async with asyncio.timeout(10):
        for task in list(running):
            with suppress(Exception):
                await task


def head(
    status: int = 200,
    content_type: str = "text/event-stream",
    *,
    length: int | None = None,
    chunked: bool = False,
    version: str = "1.1",
    extra: bytes = b"",
) -> bytes:
    lines = [f"HTTP/{version} {status} X".encode(), f"content-type: {content_type}".encode()]
    if length is not None:
        lines.append(b"content-length: %d" % length)
    if chunked:
        lines.append(b"transfer-encoding: chunked")
    if length is None and not chunked:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


@dataclass
class Proxy:
    """A forwarding proxy: CONNECT tunnels, and absolute-form requests sent on."""

    seen: list[bytes] = field(default_factory=list)  # each request line it was sent
    running: Running = field(default_factory=dict)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _track(self.running, writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0]
            self.seen.append(line)
            method, target, _ = line.split(b" ", 2)
            if method == b"CONNECT":
                host, port = target.decode().rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # http://host:port/path: send on in origin form
                rest = target.split(b"://", 1)[1]
                authority, _, path = rest.partition(b"/")
                host, port = authority.decode().rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                up_writer.write(head.replace(target, b"/" + path, 1))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()


@asynccontextmanager
async def proxy_server() -> AsyncIterator[tuple[Proxy, str]]:
    proxy = Proxy()
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield proxy, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await _stop(proxy.running)
        await server.wait_closed()
