"""A closed-loop streaming client that counts SSE events without parsing JSON.

Each connection sends one request at a time over keep-alive HTTP/1.1 and reads the chunked
response with a minimal parser: it notes when the first event arrives, counts events (blank
lines) and checks the stream's terminator, so that errors, short streams and missing
terminators are counted, never assumed away.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field


@dataclass
class Target:
    name: str
    port: int
    path: str
    body: bytes
    terminator: bytes  # what a complete stream's last event contains
    events: int  # events in a complete stream
    process: str = "gateway"  # whose CPU the phase charges
    headers: bytes = b""  # extra request header lines, each ending in CRLF

    def request(self) -> bytes:
        # `@ID@` in a body becomes a number of its own per request (a chat id: one user's
        # chat each, as real traffic has, not every client writing to the same chat).
        body = self.body.replace(b"@ID@", b"%d" % next(_ids)) if FRESH in self.body else self.body
        return (
            b"POST %b HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"accept: text/event-stream\r\n%bcontent-length: %d\r\n\r\n%b"
            % (self.path.encode(), self.headers, len(body), body)
        )

    @property
    def fresh(self) -> bool:
        return FRESH in self.body


FRESH = b"@ID@"
_ids = itertools.count()


@dataclass
class Results:
    ttfc: list[float] = field(default_factory=list)  # seconds, request sent → first event
    streams: int = 0
    events: int = 0
    errors: int = 0
    short: int = 0
    unterminated: int = 0
    hangups: list[float] = field(default_factory=list)  # monotonic times we closed early
    statuses: dict[int, int] = field(default_factory=dict)  # non-200 answers, by status


class _Stream(asyncio.Protocol):
    """One keep-alive connection; `run()` sends a request and waits for its whole response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] | None = None
        self.first_event: asyncio.Future[None] | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.first_event is not None and not self.first_event.done():
            self.first_event.set_result(None)
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))

    def start(self, request: bytes) -> asyncio.Future[None]:
        self.buffer = b""
        self.in_body = False
        self.status = 0
        self.chunk_left = 0
        self.events = 0
        self.last_byte = b""
        self.tail = b""
        self.first_at: float | None = None
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.first_event = loop.create_future()
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(request)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.in_body:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.buffer[9:12])
            self.head = self.buffer[:end]
            self.buffer = self.buffer[end + 4 :]
            self.in_body = True
        self._parse_chunks()

    def _parse_chunks(self) -> None:
        buffer = self.buffer
        while buffer:
            if self.chunk_left == 0:
                line_end = buffer.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(buffer[:line_end], 16)
                if size == 0:
                    if len(buffer) < line_end + 4:
                        break
                    self.buffer = b""
                    if self.done is not None and not self.done.done():
                        self.done.set_result(None)
                    return
                self.chunk_left = size + 2  # the data and its CRLF
                buffer = buffer[line_end + 2 :]
            take = buffer[: self.chunk_left]
            buffer = buffer[len(take) :]
            self.chunk_left -= len(take)
            payload = (
                take[: len(take) - max(0, 2 - self.chunk_left)] if self.chunk_left < 2 else take
            )
            self._payload(payload)
        self.buffer = buffer

    def _payload(self, payload: bytes) -> None:
        if not payload:
            return
        if self.first_at is None:
            self.first_at = time.perf_counter()
            if self.first_event is not None and not self.first_event.done():
                self.first_event.set_result(None)
        joined = self.last_byte + payload
        self.events += joined.count(b"\n\n")
        self.last_byte = payload[-1:]
        self.tail = (self.tail + payload)[-200:]


async def _connect(port: int) -> _Stream:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_Stream, "127.0.0.1", port)
    return protocol


def _check(stream: _Stream, target: Target, results: Results) -> None:
    results.streams += 1
    results.events += stream.events
    if stream.first_at is not None:
        results.ttfc.append(stream.first_at - stream.sent_at)
    if stream.status != 200:
        results.errors += 1
        results.statuses[stream.status] = results.statuses.get(stream.status, 0) + 1
    elif stream.events < target.events:
        results.short += 1
    elif target.terminator not in stream.tail:
        results.unterminated += 1


async def closed_loop(target: Target, concurrency: int, seconds: float) -> Results:
    """`concurrency` connections, each sending its next request as soon as one ends."""
    results = Results()
    deadline = time.perf_counter() + seconds
    request = target.request()

    async def worker() -> None:
        stream = await _connect(target.port)
        try:
            while time.perf_counter() < deadline:
                try:
                    await stream.start(target.request() if target.fresh else request)
                except ConnectionError:
                    results.errors += 1
                    stream = await _connect(target.port)
                    continue
                _check(stream, target, results)
        finally:
            assert stream.transport is not None
            stream.transport.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def sequential(target: Target, samples: int) -> Results:
    """One stream at a time over one connection (time to first chunk at concurrency 1)."""
    results = Results()
    stream = await _connect(target.port)
    request = target.request()
    for _ in range(samples):
        await stream.start(target.request() if target.fresh else request)
        _check(stream, target, results)
    assert stream.transport is not None
    stream.transport.close()
    return results


async def replay(port: int, start: bytes, events: int, samples: int) -> Results:
    """Reconnection replay: run one resumable stream of `events` events to its end, then
    reconnect `samples` times after its first event; each time is request → last byte.

    `results.ttfc` holds the whole replay times here (the first event is not the point)."""
    results = Results()
    stream = await _connect(port)
    await stream.start(start)
    stream_id = _header(stream.head, b"x-stream-id")
    again = b"GET /stream/%b?after=0 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n" % stream_id
    for _ in range(samples):
        await stream.start(again)
        results.ttfc.append(time.perf_counter() - stream.sent_at)
        results.streams += 1
        # retry: + every event after the first, terminal included
        if stream.status != 200:
            results.errors += 1
        elif stream.events < events:
            results.short += 1
        elif b"event: done" not in stream.tail:
            results.unterminated += 1
    assert stream.transport is not None
    stream.transport.close()
    return results


def _header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    raise ValueError(f"no {name!r} header")


async def hold_open(
    target: Target, count: int, on_all_open: asyncio.Future[None], batch: int = 500
) -> Results:
    """`count` concurrent slow streams; `on_all_open` resolves once each has its first event.

    Streams are opened in batches (each batch once the previous one has its first events), as
    clients arrive in practice: a single burst of thousands of connects overflows any listen
    backlog and measures the kernel, not the gateway.
    """
    results = Results()
    tasks: list[asyncio.Task[None]] = []

    async def one(opened: asyncio.Future[None]) -> None:
        stream, done = await _open_until_first_event(target)
        opened.set_result(None)
        await _finish(stream, done, target, results)

    loop = asyncio.get_running_loop()
    for start in range(0, count, batch):
        firsts = [loop.create_future() for _ in range(min(batch, count - start))]
        tasks += [asyncio.ensure_future(one(first)) for first in firsts]
        await asyncio.gather(*firsts)
    on_all_open.set_result(None)
    await asyncio.gather(*tasks)
    return results


async def abandon(target: Target, cycles: int) -> Results:
    """Open a stream, read its first event, hang up; note when. Repeat."""
    results = Results()
    request = target.request()
    for _ in range(cycles):
        stream = await _connect(target.port)
        done = stream.start(request)
        assert stream.first_event is not None
        await stream.first_event
        assert stream.transport is not None
        results.hangups.append(time.monotonic())
        stream.transport.abort()
        await stream.lost
        done.cancel()
        await asyncio.sleep(0.05)  # let the gateway finish tearing down before the next
    return results


async def slow_readers(
    target: Target,
    count: int,
    all_paused: asyncio.Future[None],
    resume: asyncio.Future[None],
    batch: int = 500,
) -> Results:
    """`count` clients that read one event and then stop reading until `resume` resolves,
    while a fast upstream keeps sending: back-pressure must bound what is buffered."""
    results = Results()
    streams: list[tuple[_Stream, asyncio.Future[None]]] = []

    async def one() -> None:
        stream, done = await _open_until_first_event(target)
        assert stream.transport is not None
        stream.transport.pause_reading()
        streams.append((stream, done))

    for start in range(0, count, batch):
        await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    all_paused.set_result(None)
    await resume
    for stream, _ in streams:
        assert stream.transport is not None
        stream.transport.resume_reading()
    for stream, done in streams:
        await _finish(stream, done, target, results)
    return results


async def _open_until_first_event(target: Target) -> tuple[_Stream, asyncio.Future[None]]:
    stream = await _connect(target.port)
    done = stream.start(target.request())
    assert stream.first_event is not None
    await stream.first_event
    return stream, done


async def _finish(
    stream: _Stream, done: asyncio.Future[None], target: Target, results: Results
) -> None:
    """Wait for the stream's end, check it, close the connection."""
    try:
        await done
    except ConnectionError:
        results.errors += 1
    else:
        _check(stream, target, results)
    assert stream.transport is not None
    stream.transport.close()
