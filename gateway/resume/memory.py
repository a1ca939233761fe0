"""One generation's events in this process's memory: the log its local readers follow.

A ring of at most `max_bytes` of event data. Readers replay from any position still held and
then wait for the next append; every append wakes every waiting reader at once. When the ring
has to drop its oldest events the stream stops being resumable (new readers are refused), and
a live reader that fell behind what is still held ends with an in-band error: the memory a
stream can take is bounded, whatever its readers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.providers.base import Batch
from gateway.resume.events import Event, Failure, Payload, is_terminal

__all__ = ["FELL_BEHIND", "MemoryLog"]

FELL_BEHIND = Failure("unavailable", "the reader fell behind the stream by more than its log holds")


class MemoryLog:
    __slots__ = ("_events", "_sizes", "_start", "_waiters", "base", "ended", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._events: list[Payload | None] = []
        self._sizes: list[int] = []
        self._start = 0  # index in _events of the oldest event held
        self.base = 0  # seq of the oldest event held
        self.size = 0
        self.ended = False
        self._waiters: list[asyncio.Future[None]] = []  # readers waiting for the next append

    @property
    def next_seq(self) -> int:
        return self.base + len(self._events) - self._start

    @property
    def truncated(self) -> bool:
        return self.base > 0

    def append(self, payload: Payload, size: int) -> int:
        """Add the next event (`size`: its bytes); returns its seq."""
        seq = self.next_seq
        self._events.append(payload)
        self._sizes.append(size)
        self.size += size
        while self.size > self.max_bytes and len(self._events) - self._start > 1:
            self._drop_oldest()
        if is_terminal(payload):
            self.ended = True
        self._wake()
        return seq

    def extend(self, deltas: Batch, sizes: list[int]) -> None:
        """Add the deltas of one upstream read (never a terminal event), waking readers once."""
        self._events += deltas
        self._sizes += sizes
        self.size += sum(sizes)
        while self.size > self.max_bytes and len(self._events) - self._start > 1:
            self._drop_oldest()
        self._wake()

    def _wake(self) -> None:
        # A future per waiting reader, woken once per append (an asyncio.Event per append
        # cost more than the append itself).
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _drop_oldest(self) -> None:
        self.size -= self._sizes[self._start]
        self._events[self._start] = None
        self._start += 1
        self.base += 1
        if self._start > 1024 and self._start * 2 > len(self._events):
            del self._events[: self._start], self._sizes[: self._start]
            self._start = 0

    def held(self) -> list[Payload]:
        """The events still held, oldest first (all of them unless `truncated`)."""
        return self._events[self._start :]  # type: ignore[return-value]  # never None here

    def last_seq(self) -> int:
        return self.next_seq - 1

    async def follow(self, after: int) -> AsyncIterator[list[Event]]:
        """Every event after `after`, in order, exactly once; then the live ones to the end.

        Yields the events in hand together as one list (a reader may send them in one write).
        """
        cursor = after + 1
        while True:
            if cursor < self.next_seq:
                if cursor < self.base:
                    yield [(cursor, FELL_BEHIND)]
                    return
                start = self._start + cursor - self.base
                payloads = self._events[start : start + self.next_seq - cursor]
                # Only the log's last event can be terminal: one check per batch, and the
                # (seq, payload) pairs built in C.
                batch = list(zip(range(cursor, cursor + len(payloads)), payloads, strict=True))
                cursor += len(payloads)
                yield batch  # type: ignore[misc]  # held events are never None
                if is_terminal(payloads[-1]):  # type: ignore[arg-type]
                    return
                continue
            if self.ended:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:  # the reader left: it no longer waits
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
