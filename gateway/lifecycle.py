"""Who may interrupt a stream, and how: client disconnects and shutdown.

A request is served by one asyncio task from the handler to the last byte (FastAPI awaits the
handler and then the response in the same task). `StreamGuard` owns that task's interruption:
a watcher reads the ASGI `receive` channel and, when the client goes away, cancels the task
with a recorded reason. The cancellation lands at whatever `await` the task is in (waiting
for the first token, reading the upstream, or writing to a slow client), unwinds the adapter's
`async with` and so closes the upstream connection at once, in every phase. The guard then
takes the cancellation back (`Task.uncancel`) and the code that caught it decides what the
client sees. `Drain` does the same for every active stream when the shutdown grace runs out.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from starlette.types import Receive

from gateway.errors import GatewayError, Unavailable

if TYPE_CHECKING:
    from gateway.limits import Lease

__all__ = ["ClientDisconnected", "Drain", "Interrupt", "StreamGuard", "drain_on_exit_signals"]

T = TypeVar("T")
log = logging.getLogger("gateway")
BACKSTOP_S = 1.0  # after the grace: how long interrupted streams get to unwind


class Interrupt(enum.Enum):
    DISCONNECT = "client_disconnect"
    SHUTDOWN = "shutdown"


class ClientDisconnected(GatewayError):
    """The client left before the response started; nobody will read the answer."""

    status, type = 499, "client_disconnect"


class Interruptible(Protocol):
    """A stream in flight: a request's guard, or a detached resumable generation."""

    def interrupt(self, reason: Interrupt) -> None: ...


class Drain:
    """Readiness and the streams in flight, for graceful shutdown (SPEC §6).

    While draining, the server keeps listening: new streams and `/readyz` answer 503, so load
    balancers see the replica leave instead of a refused connection. The server is told to
    stop (`then`) only once no stream is left, or when the grace is over and the ones still
    running have been ended.
    """

    def __init__(self) -> None:
        self.draining = False
        self.active: set[Interruptible] = set()
        self._then: Callable[[], None] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def begin(self, grace_s: float, then: Callable[[], None] | None = None) -> None:
        """Stop admitting; call `then` once the streams are done, ending them after `grace_s`."""
        if self.draining:
            return
        self.draining = True
        self._then = then
        log.info(
            "draining: %d stream(s) in flight get up to %gs to finish; new streams get 503",
            len(self.active),
            grace_s,
        )
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(grace_s, self.interrupt_all)
        self._settle()

    def interrupt_all(self) -> None:
        for guard in list(self.active):
            guard.interrupt(Interrupt.SHUTDOWN)
        # The interrupted streams leave as they unwind; this is only the backstop should one
        # not, so that the process exits whatever happens.
        asyncio.get_running_loop().call_later(BACKSTOP_S, self._finish)

    def leave(self, stream: Interruptible) -> None:
        self.active.discard(stream)
        self._settle()

    def _settle(self) -> None:
        if self.draining and not self.active:
            self._finish()

    def _finish(self) -> None:
        then, self._then = self._then, None
        if self._deadline is not None:
            self._deadline.cancel()
        if then is not None:
            log.info("drained: stopping the server")
            asyncio.get_running_loop().call_soon(then)


class StreamGuard:
    __slots__ = ("_drain", "_task", "_watcher", "handed_over", "lease", "reason")

    def __init__(self, drain: Drain, receive: Receive, admit: bool = True) -> None:
        # `admit=False`: a reader of a generation already running, welcome while draining.
        if admit and drain.draining:
            raise Unavailable("the gateway is shutting down")
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._drain = drain
        self.reason: Interrupt | None = None
        self.lease: Lease | None = None  # the limits' lease, given back when the stream ends
        # A response or a generation has taken the stream's accounting over from the request
        # (gateway.api._serve.serve_stream gives back a stream that nothing took over).
        self.handed_over = False
        drain.active.add(self)
        self._watcher: asyncio.Task[None] | None = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.interrupt(Interrupt.DISCONNECT)

    def interrupt(self, reason: Interrupt) -> None:
        if self.reason is None and self._watcher is not None:
            self.reason = reason
            self._task.cancel()

    def absorb(self) -> Interrupt | None:
        """Called on CancelledError: take back our own cancellation and say why it happened.

        Returns None when the cancellation was not ours; the caller must then re-raise.
        """
        if self.reason is None:
            return None
        self._task.uncancel()
        return self.reason

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await something before the commit point, turning an interruption into an error."""
        try:
            return await awaitable
        except asyncio.CancelledError:
            reason = self.absorb()
            if reason is None:
                raise
            if reason is Interrupt.DISCONNECT:
                raise ClientDisconnected("the client went away") from None
            raise Unavailable("the gateway is shutting down") from None

    def close(self) -> None:
        """The response is complete or abandoned: stop watching; interrupts are now no-ops."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        self._drain.leave(self)


@contextmanager
def drain_on_exit_signals(drain: Drain, grace_s: float) -> Iterator[None]:
    """Drain when the server is told to exit, and pass the signal on once the drain is done.

    uvicorn installs its SIGTERM/SIGINT handlers before the app's lifespan starts (in every
    worker process too); this wraps whichever handler is there. The first signal begins the
    drain at once (`/readyz` turns 503, the grace starts) but reaches the server's handler only
    when no stream is left, so the listening socket stays open meanwhile. A second signal
    reaches it at once (a second Ctrl-C still forces the exit).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_exit(sig: int, frame: FrameType | None) -> None:
        handler: Any = previous[signal.Signals(sig)]
        if not callable(handler):
            # No server to keep listening (not served by uvicorn): exit as Python would.
            drain.begin(grace_s)
            if handler == signal.SIG_DFL:
                signal.default_int_handler(sig, frame)
            return
        if drain.draining:
            handler(sig, frame)
            return
        # A signal handler may run in the middle of the event loop's own bookkeeping: hand
        # the work to the loop rather than touching its timers from here.
        loop.call_soon_threadsafe(drain.begin, grace_s, partial(handler, sig, None))

    for sig in previous:
        signal.signal(sig, on_exit)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
