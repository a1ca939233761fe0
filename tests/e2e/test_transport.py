"""The gateway's own HTTP/1.1 transport, against a real upstream socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from gateway.providers._transport import HIGH_WATER, StreamingTransport
from tests.e2e.conftest import wait_for
from tests.e2e.servers import Break, Gate, Reply, UpstreamStub, serve

pytestmark = pytest.mark.e2e

BODY = [b"data: %d\n\n" % i for i in range(50)]


@asynccontextmanager
async def client_for(
    stub: UpstreamStub, max_connections: int = 10, **timeouts: float
) -> AsyncIterator[tuple[httpx.AsyncClient, StreamingTransport, str]]:
    transport = StreamingTransport(max_connections)
    async with serve(stub) as url:
        timeout = httpx.Timeout(5.0, **timeouts)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            yield client, transport, url


@pytest.fixture
async def stub() -> UpstreamStub:
    return UpstreamStub(Reply(body=BODY))


async def test_transport_reads_whole_bodies_and_reuses_the_connection(stub: UpstreamStub) -> None:
    async with client_for(stub) as (client, transport, url):
        first = await client.post(f"{url}/a", json={"x": 1})
        idle = [c for conns in transport._idle.values() for c in conns]
        second = await client.post(f"{url}/b", content=b"raw")
        again = [c for conns in transport._idle.values() for c in conns]
    assert first.content == second.content == b"".join(BODY)
    assert len(idle) == 1
    assert again == idle  # the same connection served both
    assert [seen.path for seen in stub.seen] == ["/a", "/b"]
    assert stub.seen[0].body == b'{"x":1}'
    assert stub.seen[1].headers["content-length"] == "3"


async def test_transport_one_byte_pieces_are_exact() -> None:
    body = b"".join(BODY)
    stub = UpstreamStub(Reply(body=[body[i : i + 1] for i in range(len(body))]))
    async with client_for(stub) as (client, _, url):
        response = await client.get(url)
    assert response.content == body


async def test_transport_response_closed_early_is_not_reused() -> None:
    stub = UpstreamStub(Reply(body=[BODY[0], Gate()]))
    async with client_for(stub) as (client, transport, url):
        async with client.stream("GET", url) as response:
            assert await anext(response.aiter_raw()) == BODY[0]
        await wait_for(stub.hung_up)
        assert transport._idle.get(("http", "127.0.0.1", int(url.rsplit(":", 1)[1])), []) == []
        assert transport.open_connections() == 0


async def test_transport_break_mid_body_is_a_protocol_error() -> None:
    stub = UpstreamStub(Reply(body=[BODY[0], Break()]))
    async with client_for(stub) as (client, _, url):
        async with client.stream("GET", url) as response:
            with pytest.raises(httpx.RemoteProtocolError):
                await response.aread()


async def test_transport_stalled_body_times_out_on_read() -> None:
    stub = UpstreamStub(Reply(body=[BODY[0], Gate()]))
    async with client_for(stub, read=0.05) as (client, _, url):
        async with client.stream("GET", url) as response:
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()


async def test_transport_stalled_headers_time_out() -> None:
    stub = UpstreamStub(Reply(body=BODY, head_gate=Gate()))
    async with client_for(stub, read=0.05) as (client, _, url):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)


async def test_transport_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient(transport=StreamingTransport(1)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_transport_waits_for_a_free_slot_then_times_out() -> None:
    stub = UpstreamStub(Reply(body=[BODY[0], Gate()]))
    async with client_for(stub, max_connections=1, pool=0.05) as (client, _, url):
        async with client.stream("GET", url) as response:
            assert await anext(response.aiter_raw()) == BODY[0]
            with pytest.raises(httpx.PoolTimeout):
                await client.get(url)


async def test_transport_stops_reading_when_the_reader_does_not() -> None:
    piece = b"x" * 65536
    count = 3000  # ~200 MB: far more than any socket buffer
    stub = UpstreamStub(Reply(body=[piece] * count))
    async with client_for(stub) as (client, transport, url):
        async with client.stream("GET", url) as response:
            reads = response.aiter_raw()
            received = len(await anext(reads))
            # The reader stops. The upstream must not be able to send everything: give it
            # a generous while to try (a guard, not a measurement: it can never succeed).
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(2):
                    await stub.finished.wait()
            (connection,) = transport._open
            assert connection.paused
            assert connection.buffered <= HIGH_WATER + 1024 * 1024
            assert stub.sent < count * len(piece)
            async for chunk in reads:
                received += len(chunk)
    assert received == count * len(piece)
