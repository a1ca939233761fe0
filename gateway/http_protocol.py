"""uvicorn's HTTP/1.1 protocol (httptools), with the response head sent with the first body
chunk.

uvicorn writes the status line and headers the moment the app sends `http.response.start`,
and each body chunk in a write of its own: two socket writes, two TCP segments and two
wake-ups of the client for a stream's first chunk. The gateway sends the start of a stream
only once its first chunk is in hand (the commit point), and the first body message follows
in the same step of the event loop: holding the head until then delays nothing and saves a
system call and a segment per response. A response whose first body waits (a resumed stream
with nothing new yet) is not held back: the head is written on its own as soon as the task
yields to the event loop, as uvicorn would have.

This subclass changes nothing else: uvicorn still builds the head (its checks, its default
headers, keep-alive and chunked framing) and the body's framing; the head's bytes are only
held back and written in front of the first body write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

__all__ = ["HeadWithFirstChunk"]


class _Capture:
    """Stands for the transport while uvicorn writes the head: keeps the bytes."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _Prefixed:
    """Stands for the transport during the first body write: the head goes in front."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: Any, head: bytes) -> None:
        self._transport = transport
        self._head = head

    def write(self, data: bytes) -> None:
        self._transport.write(self._head + data)

    def __getattr__(self, name: str) -> Any:  # close(), when the response ends the connection
        return getattr(self._transport, name)


class _Cycle(RequestResponseCycle):
    held: bytes | None = None  # the head, written with the first body message

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            transport, capture = self.transport, _Capture()
            self.transport = capture  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self.held = capture.data or None
            if self.held is not None:
                asyncio.get_running_loop().call_soon(self._write_held)
            return
        held = self.held
        if held is None or kind != "http.response.body":
            await super().send(message)
            return
        self.held = None
        transport = self.transport
        self.transport = _Prefixed(transport, held)  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport

    def _write_held(self) -> None:
        """The task yielded before its first body message: the head goes on its own."""
        held, self.held = self.held, None
        if held is not None and not self.disconnected:
            self.transport.write(held)


class HeadWithFirstChunk(HttpToolsProtocol):
    """uvicorn's `httptools` protocol whose requests' cycles hold the head (see above)."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # uvicorn made the cycle and scheduled its task, which has not run yet: the cycle's
        # `send` is looked up when it does.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = _Cycle
