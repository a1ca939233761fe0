"""Real sockets: the gateway under uvicorn, and a scriptable upstream stub beside it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.http_protocol import HeadWithFirstChunk


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve(app: Any, **config: Any) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a pre-bound 127.0.0.1 port, in this event loop.

    The socket is closed however this ends, a failed start-up included: a socket left to the
    garbage collector warns at some later, arbitrary point (with warnings as errors, inside
    pytest's own reporting, which then stops the whole run with INTERNALERROR).
    """
    sock = _bound_socket()
    try:
        port = sock.getsockname()[1]
        config.setdefault("http", HeadWithFirstChunk)  # the gateway's, as `gateway serve`
        server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", **config)
        )
        task = asyncio.create_task(_run(server, sock))
        try:
            while not server.started:  # a condition, polled: uvicorn exposes no event for it
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task
    finally:
        sock.close()


async def _run(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn exits the process (SystemExit) when the app fails to start; in a test that
    must be an ordinary failure of that test, not an exception escaping the event loop."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exit_:
        raise RuntimeError(
            f"the app under test failed to start (uvicorn exit {exit_.code}): see its log"
        ) from None


async def answered_lifespan(scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer a lifespan scope (a stub has nothing to start or stop); False for any other."""
    if scope["type"] != "lifespan":
        return False
    while True:
        kind = (await receive())["type"]
        await send({"type": kind + ".complete"})
        if kind == "lifespan.shutdown":
            return True


async def read_body(receive: Receive) -> bytes:
    """A request's whole body, however many messages it came in."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class Gate:
    """A point in a scripted body where the stub waits until the test opens it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def open(self) -> None:
        self.event.set()


class Break:
    """Make the stub's connection fail mid-body (the client sees a truncated response)."""


Step = bytes | Gate | Break


@dataclass
class Reply:
    status: int = 200
    content_type: str = "text/event-stream"
    body: Sequence[Step] = ()
    headers: dict[str, str] = field(default_factory=dict)
    head_gate: Gate | None = None  # hold the response headers back until opened


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class UpstreamStub:
    """A tiny ASGI upstream: answers each request with the next scripted `Reply`.

    It records what it was sent, and sets `hung_up` when its client closes the connection
    before the body is complete: the observable proof that the gateway cancelled it.
    """

    def __init__(self, *replies: Reply | Callable[[], Reply]) -> None:
        self.replies = list(replies)
        self.seen: list[Seen] = []
        self.hung_up = asyncio.Event()
        self.hang_ups = 0
        self.open_streams = 0
        self.finished = asyncio.Event()
        self.sent = 0  # body bytes handed to the server so far
        self.requested = asyncio.Event()  # set once a request has arrived

    def reply(self, *replies: Reply | Callable[[], Reply]) -> None:
        self.replies.extend(replies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await answered_lifespan(scope, receive, send):
            return
        body = await read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.append(Seen(scope["path"], headers, body))
        self.requested.set()
        item = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        reply = item() if callable(item) else item
        self.open_streams += 1
        try:
            await self._send(reply, receive, send)
        finally:
            self.open_streams -= 1

    async def _send(self, reply: Reply, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", reply.content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        watcher = asyncio.create_task(self._watch(receive))
        try:
            if reply.head_gate is not None:
                await _first(reply.head_gate.event.wait(), watcher)
                if watcher.done():
                    return
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            for step in reply.body:
                if isinstance(step, Gate):
                    await _first(step.event.wait(), watcher)
                    if watcher.done():
                        return
                elif isinstance(step, Break):
                    raise ConnectionAbortedError("scripted break")
                else:
                    await send({"type": "http.response.body", "body": step, "more_body": True})
                    self.sent += len(step)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.finished.set()
        finally:
            watcher.cancel()

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.hang_ups += 1
        self.hung_up.set()


async def _first(waiting: Any, watcher: asyncio.Task[None]) -> None:
    task = asyncio.ensure_future(waiting)
    await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
