"""A mock OpenAI-style upstream: pre-serialised SSE events, one write each.

A raw asyncio protocol (no framework) so that the harness is never the thing measured. The
model name in the request says what to stream: `bench-<chunks>-<delay_ms>`, and with `-reset`
appended it resets the connection halfway through the events (the soak's faulty upstream).
Between events it yields to its event loop (or sleeps `delay_ms`), so concurrent streams
interleave as real tokens do. It records, for every stream its client abandoned, when the
connection was lost.

Run: python -m bench.mock_upstream PORT
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

_MODEL = re.compile(rb'"model":\s*"[^"]*?bench-(\d+)-(\d+)(-reset)?"')
_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def _event(index: int) -> bytes:
    body = (
        b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench",'
        b'"choices":[{"index":0,"delta":{"content":"tok%d "},"finish_reason":null}]}' % index
    )
    return _chunk(b"data: " + body + b"\n\n")


EVENTS = [_event(i) for i in range(100_000)]
PREFIX = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,'
FINISH = b'"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
USAGE = (
    b'"model":"bench","choices":[],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
)
TAIL = _chunk(PREFIX + FINISH + PREFIX + USAGE + b"data: [DONE]\n\n") + b"0\r\n\r\n"


class Stats:
    lost_while_streaming: list[float] = []  # monotonic times of abandoned streams' closes


class MockProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.streaming: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming is not None and not self.streaming.done():
            Stats.lost_while_streaming.append(time.monotonic())
            self.streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        length = int(re.search(rb"content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        match = _MODEL.search(body)
        chunks, delay = (int(match.group(1)), int(match.group(2))) if match else (64, 0)
        reset_at = chunks // 2 if match and match.group(3) else None
        self.streaming = asyncio.ensure_future(self.stream(chunks, delay / 1000, reset_at))

    async def stream(self, chunks: int, delay: float, reset_at: int | None = None) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(_HEAD)
        for index in range(chunks):
            if index:
                await asyncio.sleep(delay)
            if transport.is_closing():
                return
            if index == reset_at:
                transport.abort()  # a reset mid-body: the gateway's in-band error
                return
            transport.write(EVENTS[index])
        transport.write(TAIL)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, "127.0.0.1", port, backlog=16384)
    print("ready", flush=True)
    async with server:
        # Report abandoned-stream close times on request: one line per query on stdin.
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip() == b"lost":
                print(" ".join(f"{t:.6f}" for t in Stats.lost_while_streaming), flush=True)
                Stats.lost_while_streaming.clear()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main(int(sys.argv[1])))
    else:
        uvloop.run(main(int(sys.argv[1])))
