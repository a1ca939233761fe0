"""Keep-alive frames: sent only after a silent interval, never concurrently with the
response's own writes, never out of order, never after close."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from gateway.keepalive import TICKS, Keepalive

GUARD_S = 10  # a guard on event waits, never a timing assertion
PING = b"ping"


def body(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


class Recorder:
    """A fake ASGI send: records bodies; sends of `hold` wait until `release` is set."""

    def __init__(self, hold: bytes | None = None) -> None:
        self.sent: list[bytes] = []
        self.hold = hold
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()
        self.holding = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        if message["body"] == self.hold:
            self.holding.set()
            await self.release.wait()
        self.sent.append(message["body"])
        self.arrived.set()

    async def nth(self, n: int) -> bytes:
        """The n-th frame sent (1-based), once it has been."""
        async with asyncio.timeout(GUARD_S):
            while len(self.sent) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.sent[n - 1]


async def test_a_silent_stream_gets_keepalives() -> None:
    send = Recorder()
    keepalive = Keepalive(send, PING, 0.001)
    try:
        assert await send.nth(1) == PING
    finally:
        keepalive.close()


NEVER = 3600.0  # the timer never fires by itself: `elapse()` stands for an interval elapsing


def elapse(keepalive: Keepalive) -> None:
    for _ in range(TICKS):
        keepalive._tick()


async def test_no_keepalive_while_the_response_is_writing_or_just_wrote() -> None:
    send = Recorder(hold=b"slow")
    keepalive = Keepalive(send, PING, NEVER)
    writing = asyncio.create_task(keepalive.send(body(b"slow")))
    async with asyncio.timeout(GUARD_S):
        await send.holding.wait()
    for _ in range(3):  # intervals pass while the response's own write is stuck
        elapse(keepalive)
    send.release.set()
    await writing
    elapse(keepalive)  # the interval in which the write finished had progress
    await asyncio.sleep(0)
    assert send.sent == [b"slow"]
    elapse(keepalive)  # a whole silent interval: now a keep-alive
    assert await send.nth(2) == PING
    keepalive.close()


async def test_a_keepalive_being_written_goes_before_the_next_frame() -> None:
    send = Recorder(hold=PING)
    keepalive = Keepalive(send, PING, NEVER)
    elapse(keepalive)
    async with asyncio.timeout(GUARD_S):
        await send.holding.wait()  # a keep-alive is on its way, stuck in the write
    elapse(keepalive)  # no second one while the first is pending
    frame = asyncio.create_task(keepalive.send(body(b"delta")))
    await asyncio.sleep(0)
    assert send.sent == []  # the delta waits for the keep-alive
    send.release.set()
    await frame
    keepalive.close()
    assert send.sent == [PING, b"delta"]


async def test_close_stops_keepalives_and_abandons_one_in_flight() -> None:
    send = Recorder(hold=PING)
    keepalive = Keepalive(send, PING, NEVER)
    elapse(keepalive)
    async with asyncio.timeout(GUARD_S):
        await send.holding.wait()
    pending = keepalive._pending
    keepalive.close()
    assert keepalive._timer.cancelled()
    assert pending is not None
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert send.sent == []


async def test_a_failed_keepalive_write_is_left_to_the_response() -> None:
    attempted = asyncio.Event()

    async def broken(message: Message) -> None:
        attempted.set()
        raise OSError("client gone")

    keepalive = Keepalive(broken, PING, NEVER)
    elapse(keepalive)
    pending = keepalive._pending
    assert pending is not None
    await pending  # the error stays inside the keep-alive's task
    assert attempted.is_set() and keepalive._pending is None
    keepalive.close()


async def test_a_keepalive_comes_after_a_whole_interval_of_silence_never_sooner() -> None:
    send = Recorder()
    keepalive = Keepalive(send, PING, NEVER)
    await keepalive.send(body(b"delta"))
    keepalive._tick()  # the tick after the write saw it: silence is counted from here
    for _ in range(TICKS - 1):
        keepalive._tick()
    await asyncio.sleep(0)
    assert send.sent == [b"delta"]  # not yet a whole interval since the write
    keepalive._tick()
    assert await send.nth(2) == PING
    keepalive.close()
