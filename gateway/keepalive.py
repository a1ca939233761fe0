"""Keep-alive frames for streams that fall silent (Anthropic's `ping`, SSE comments).

A stream waiting on a slow upstream sends nothing, and proxies, load balancers and clients
close connections that stay silent for long. `Keepalive` wraps a response's ASGI `send`: one
timer per stream, ticking three times per interval (never per chunk), sends the format's
keep-alive frame once three ticks in a row saw nothing sent: after between one interval and
four thirds of one of silence (15 to 20 s for the default 15 s), never sooner.

The frame is written by a small task while the response's own task waits on the upstream. The
two never write at once: the timer does not fire a frame while the response is inside `send`,
and the response first lets a keep-alive that is being written finish, so frames keep their
order and none follows the response's last one.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Message, Send

__all__ = ["Keepalive"]

TICKS = 3  # per interval: how finely silence is measured


class Keepalive:
    __slots__ = (
        "_busy",
        "_message",
        "_pending",
        "_progress",
        "_quiet",
        "_send",
        "_step",
        "_timer",
    )

    def __init__(self, send: Send, frame: bytes, interval: float) -> None:
        self._send = send
        self._message: Message = {"type": "http.response.body", "body": frame, "more_body": True}
        self._step = interval / TICKS
        self._busy = False
        self._progress = False
        self._quiet = 0  # ticks in a row that saw nothing sent
        self._pending: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(self._step, self._tick)

    async def send(self, message: Message) -> None:
        if self._pending is not None:  # a keep-alive is being written: it goes first
            await self._pending
        self._busy = True
        await self._send(message)
        self._busy = False
        self._progress = True

    def _tick(self) -> None:
        if self._busy or self._progress or self._pending is not None:
            self._quiet = 0
        else:
            self._quiet += 1
            if self._quiet == TICKS:
                self._quiet = 0
                self._pending = asyncio.ensure_future(self._write())
        self._progress = False
        self._timer = asyncio.get_running_loop().call_later(self._step, self._tick)

    async def _write(self) -> None:
        # A failed write means the client is gone: the response's own next send, or its
        # disconnect watcher, ends the stream; the keep-alive has nothing to add.
        with contextlib.suppress(Exception):
            await self._send(self._message)
        self._pending = None

    def close(self) -> None:
        """The response is over: no more keep-alives (one being written is abandoned)."""
        self._timer.cancel()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
