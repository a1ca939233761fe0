"""uvicorn's protocol with the response head held for the first body chunk
(gateway.http_protocol), on a real socket: one write where uvicorn made two, and a head never
held while the body waits."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.http_protocol import HeadWithFirstChunk
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

HEADERS = [(b"content-type", b"text/plain")]


class _Recording:
    """The connection's transport, with every write recorded."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport = transport
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def recording_protocol(writes: list[bytes]) -> type[HeadWithFirstChunk]:
    class Recording(HeadWithFirstChunk):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(_Recording(transport, writes))

    return Recording


async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    for chunk in (b"one ", b"two ", b""):
        await send({"type": "http.response.body", "body": chunk, "more_body": bool(chunk)})


async def test_the_head_leaves_with_the_first_chunk_in_one_write() -> None:
    writes: list[bytes] = []
    async with serve(streaming, http=recording_protocol(writes)) as url:
        async with httpx.AsyncClient() as http:
            first = await http.get(url)
            second = await http.get(url)  # the same kept-alive connection
    assert first.text == second.text == "one two "
    assert len(writes) == 6  # per response: head + "one ", "two ", the last chunk
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\n4\r\none \r\n")
    assert writes[1:3] == [b"4\r\ntwo \r\n", b"0\r\n\r\n"]
    assert writes[3].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_head_whose_body_waits_is_sent_at_once() -> None:
    release = asyncio.Event()

    async def waiting(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await release.wait()  # nothing to send yet (a resumed stream, say)
        await send({"type": "http.response.body", "body": b"late", "more_body": False})

    async with serve(waiting, http=HeadWithFirstChunk) as url:
        async with httpx.AsyncClient() as http, http.stream("GET", url) as response:
            assert response.status_code == 200  # the head came while the body waited
            release.set()
            assert await response.aread() == b"late"


async def test_a_response_without_a_body_and_a_failure_after_the_head() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/empty":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        raise RuntimeError("failed after the head")

    async with serve(app, http=HeadWithFirstChunk) as url:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/empty")).status_code == 204
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"{url}/broken")  # closed: never a complete-looking answer
