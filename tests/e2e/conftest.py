from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from gateway.providers.base import ChatRequest, StreamOutcome
from gateway.providers.fake import FakeProvider
from tests.ci import require

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.e2e

GUARD_S = 10  # generous guard on event waits; never a timing assertion


@pytest.fixture(autouse=True)
def collect_garbage_in_teardown() -> Iterator[None]:
    """Whatever a test left to the garbage collector (a socket, a transport, a client session)
    is collected in that test's own teardown, so that its ResourceWarning fails that test.
    Collected later, it warns at an arbitrary point: with warnings as errors, even inside
    pytest's report-making, which turns one failure into an INTERNALERROR that stops the run.

    What survives the collection is not this test's garbage (modules, session and module
    fixtures, caches): it is frozen out of the collector's sight, as the gateway freezes its
    start-up heap (`app.settle_heap`), so that the next test's collection walks only what that
    test allocated. Walking the whole session's heap took 0.1 to 0.3 s a test, ~2 minutes of
    the suite."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def thaw_heap_after_module() -> Iterator[None]:
    """Back in view after each module: what a module's fixtures held and let go of is then
    collected in the next test's teardown, as it was before the freezing above."""
    yield
    gc.unfreeze()


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The browser to drive: $CHROMIUM, else Debian's (skips locally, fails in CI, if absent)."""
    return os.environ.get("CHROMIUM") or require("chromium")


# Playwright's objects belong to the event loop that made them: the browser tests run in their
# module's loop (`pytestmark = pytest.mark.asyncio(loop_scope="module")`) to share it.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium for a module's tests (launching one took ~2 s a test). Each test
    opens a context of its own (`new_context`): cookies, storage and cache as empty as a
    freshly launched browser's, and closed with the test."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            await browser.close()


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

    async def stream(
        self, request: ChatRequest, outcome: StreamOutcome
    ) -> AsyncIterator[list[str]]:
        self.calls += 1
        try:
            for gate, chunk in zip(self.gates, self.chunks, strict=True):
                self.started.set()
                await gate.wait()
                yield [chunk]
            outcome.finish_reason = "stop"
        finally:
            self.closed.set()

    async def aclose(self) -> None:
        return None


class CountingFake(FakeProvider):
    """The real fake provider, counting how many generations it was asked for."""

    calls = 0

    async def stream(
        self, request: ChatRequest, outcome: StreamOutcome
    ) -> AsyncIterator[list[str]]:
        self.calls += 1
        async for batch in super().stream(request, outcome):
            yield batch


async def wait_for(event: asyncio.Event) -> None:
    async with asyncio.timeout(GUARD_S):
        await event.wait()


class RequestsLogged:
    """Counts the gateway's per-request log lines: each is written only once its request has
    fully ended (response sent, slot given back, metrics recorded)."""

    def __init__(self) -> None:
        import logging

        self.count = 0
        self.changed = asyncio.Event()
        outer = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage() == "request":
                    outer.count += 1
                    outer.changed.set()

        self.handler = Handler()
        self.logger = logging.getLogger("gateway.access")

    def __enter__(self) -> RequestsLogged:
        import logging

        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)

    async def reach(self, count: int) -> None:
        async with asyncio.timeout(GUARD_S):
            while self.count < count:
                self.changed.clear()
                await self.changed.wait()
