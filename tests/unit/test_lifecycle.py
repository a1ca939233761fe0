from __future__ import annotations

import asyncio
import signal
from types import FrameType

import pytest

from gateway.lifecycle import Drain, drain_on_exit_signals


async def test_exit_signal_begins_the_drain_and_reaches_the_servers_handler() -> None:
    received: list[int] = []

    def server_handler(sig: int, frame: FrameType | None) -> None:
        received.append(sig)

    original = signal.signal(signal.SIGTERM, server_handler)
    try:
        drain = Drain()
        with drain_on_exit_signals(drain, grace_s=60):
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            handler(signal.SIGTERM, None)
            assert drain.draining
            assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is server_handler  # restored
    finally:
        signal.signal(signal.SIGTERM, original)


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


async def test_drain_interrupts_active_streams_when_the_grace_ends() -> None:
    drain = Drain()
    interrupted = asyncio.Event()

    class Probe:
        def interrupt(self, reason: object) -> None:
            interrupted.set()

    drain.active.add(Probe())  # type: ignore[arg-type]
    drain.begin(0)
    drain.begin(0)  # a second signal changes nothing
    async with asyncio.timeout(5):
        await interrupted.wait()


def test_outside_the_main_thread_signals_are_left_alone() -> None:
    import threading

    seen: list[bool] = []

    def run() -> None:
        with drain_on_exit_signals(Drain(), 1):
            seen.append(True)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [True]
