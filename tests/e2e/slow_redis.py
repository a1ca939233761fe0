"""A Redis that answers when the test says so: a tiny TCP proxy in front of a real redis-server.

Commands go through at once; the replies to commands that name a watched key (by a byte
pattern, e.g. the resumable stream's `gw:s:{`) are held back until the test releases them.
`asked` is set when such a command arrived, so the test knows the gateway is waiting on Redis
(no sleeps as synchronisation).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit


class SlowRedis:
    def __init__(self, target: str, watch: bytes) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.watch = watch
        self.asked = asyncio.Event()
        self.released = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    def release(self) -> None:
        """Let every held reply (and every later one) through."""
        self.released.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        held = asyncio.Event()  # this connection's last command named a watched key
        upward = asyncio.ensure_future(self._upward(reader, up_writer, held))
        downward = asyncio.ensure_future(self._downward(up_reader, writer, held))
        try:
            await asyncio.wait({upward, downward}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upward, downward):
                task.cancel()
            for each in (writer, up_writer):
                each.close()

    async def _upward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if self.watch in data and not self.released.is_set():
                held.set()
                self.asked.set()
            writer.write(data)
            await writer.drain()

    async def _downward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if held.is_set():
                await self.released.wait()
                held.clear()
            writer.write(data)
            await writer.drain()

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._client(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@asynccontextmanager
async def slow_redis(target: str, watch: bytes) -> AsyncIterator[SlowRedis]:
    proxy = SlowRedis(target, watch)
    server = await asyncio.start_server(proxy._spawn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy.url = f"redis://127.0.0.1:{port}/0"
    try:
        yield proxy
    finally:
        proxy.release()
        server.close()
        for task in list(proxy._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await server.wait_closed()
