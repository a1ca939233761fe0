from __future__ import annotations

import asyncio
import signal
from types import FrameType

import pytest

from gateway.lifecycle import Drain, drain_on_exit_signals


class Probe:
    """Stands for a stream in flight: records being interrupted."""

    def __init__(self) -> None:
        self.interrupted = asyncio.Event()

    def interrupt(self, reason: object) -> None:
        self.interrupted.set()


async def test_exit_signal_drains_first_and_reaches_the_server_once_streams_are_done() -> None:
    stopped = asyncio.Event()
    received: list[int] = []

    def server_handler(sig: int, frame: FrameType | None) -> None:
        received.append(sig)
        stopped.set()

    original = signal.signal(signal.SIGTERM, server_handler)
    try:
        drain, stream = Drain(), Probe()
        drain.active.add(stream)  # type: ignore[arg-type]
        with drain_on_exit_signals(drain, grace_s=60):
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            handler(signal.SIGTERM, None)
            await asyncio.sleep(0)  # the loop runs the handed-over work
            assert drain.draining
            await asyncio.sleep(0)
            assert received == []  # the server keeps listening while a stream runs
            drain.leave(stream)  # type: ignore[arg-type]
            async with asyncio.timeout(5):
                await stopped.wait()
            assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is server_handler  # restored
    finally:
        signal.signal(signal.SIGTERM, original)


async def test_a_second_signal_reaches_the_server_at_once() -> None:
    received: list[int] = []
    original = signal.signal(signal.SIGINT, lambda sig, frame: received.append(sig))
    try:
        drain = Drain()
        drain.active.add(Probe())  # type: ignore[arg-type]
        with drain_on_exit_signals(drain, grace_s=60):
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler)
            handler(signal.SIGINT, None)
            await asyncio.sleep(0)
            assert drain.draining
            assert received == []
            handler(signal.SIGINT, None)
            assert received == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, original)


async def test_default_sigint_still_interrupts() -> None:
    original = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        with drain_on_exit_signals(Drain(), grace_s=60):
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler)
            with pytest.raises(KeyboardInterrupt):
                handler(signal.SIGINT, None)
    finally:
        signal.signal(signal.SIGINT, original)


async def test_drain_interrupts_active_streams_when_the_grace_ends_then_stops() -> None:
    drain, stream = Drain(), Probe()
    stopped = asyncio.Event()
    drain.active.add(stream)  # type: ignore[arg-type]
    drain.begin(0, stopped.set)
    drain.begin(0)  # a second signal changes nothing
    async with asyncio.timeout(5):
        await stream.interrupted.wait()
    assert not stopped.is_set()
    drain.leave(stream)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        await stopped.wait()


async def test_the_backstop_stops_the_server_even_if_a_stream_never_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("gateway.lifecycle.BACKSTOP_S", 0)
    drain, stopped = Drain(), asyncio.Event()
    drain.active.add(Probe())  # type: ignore[arg-type]
    drain.begin(0, stopped.set)
    async with asyncio.timeout(5):
        await stopped.wait()


def test_outside_the_main_thread_signals_are_left_alone() -> None:
    """An app served in a thread (a test client, an embedding server) has no signals of its
    own: the handlers stay as they were, and entering the guard does not fail."""
    import threading

    exits = (signal.SIGTERM, signal.SIGINT)
    before = {sig: signal.getsignal(sig) for sig in exits}
    inside: dict[signal.Signals, object] = {}
    failures: list[BaseException] = []

    async def serve() -> None:
        with drain_on_exit_signals(Drain(), 1):
            inside.update({sig: signal.getsignal(sig) for sig in exits})

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported below, in the test's own thread
            failures.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert failures == []
    assert inside == before
    assert {sig: signal.getsignal(sig) for sig in exits} == before
