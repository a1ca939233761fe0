from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.providers.base import ChatRequest, StreamOutcome

pytestmark = pytest.mark.e2e

GUARD_S = 10  # generous guard on event waits; never a timing assertion


class GatedProvider:
    """A test adapter (same protocol as the real ones) that releases chunk i at gate i.

    `started` is set once the stream is waiting for its first gate; `closed` once the
    generator has been closed or cancelled, the observable proof of cleanup.
    """

    def __init__(self, chunks: tuple[str, ...] = ("one ", "two ", "three ", "four ")) -> None:
        self.chunks = chunks
        self.gates = [asyncio.Event() for _ in chunks]
        self.started = asyncio.Event()
        self.closed = asyncio.Event()
        self.calls = 0

    def open_all(self) -> None:
        for gate in self.gates:
            gate.set()

    async def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[str]:
        self.calls += 1
        try:
            for gate, chunk in zip(self.gates, self.chunks, strict=True):
                self.started.set()
                await gate.wait()
                yield chunk
            outcome.finish_reason = "stop"
        finally:
            self.closed.set()

    async def aclose(self) -> None:
        return None


async def wait_for(event: asyncio.Event) -> None:
    async with asyncio.timeout(GUARD_S):
        await event.wait()
