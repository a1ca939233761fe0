"""Streaming behaviour through real uvicorn on a real socket (in-process clients buffer)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.providers.base import ChatRequest, StreamOutcome
from gateway.providers.fake import FakeConfig, FakeProvider, load_story, split_chunks
from tests.conftest import FAST_FAKE, settings_from
from tests.e2e.conftest import GatedProvider, wait_for
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

STORY = load_story(None)


async def test_chunk_n_arrives_before_the_fake_releases_chunk_n_plus_1() -> None:
    chunks = split_chunks(STORY, "word")
    gates = [asyncio.Event() for _ in chunks]
    released: list[int] = []

    async def pace(index: int) -> None:
        await gates[index].wait()
        released.append(index)

    fake = FakeProvider(FakeConfig(chunking="word"), pace=pace)
    app = create_app(settings_from(FAST_FAKE), {"fake": fake})
    gates[0].set()
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/stream", params={"prompt": "hi"}) as response:
            assert response.status_code == 200
            reads = response.aiter_raw()
            for index in range(10):
                assert await anext(reads) == chunks[index].encode()
                assert released == list(range(index + 1))  # chunk index+1 not yet released
                gates[index + 1].set()
            for gate in gates:
                gate.set()
            rest = b"".join([chunk async for chunk in reads])
    assert "".join(chunks[:10]).encode() + rest == STORY.encode()


@pytest.mark.parametrize("fmt", ["text", "sse", "ndjson"])
async def test_sse_and_ndjson_frames_are_sent_one_by_one(fmt: str) -> None:
    provider = GatedProvider()
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    provider.gates[0].set()
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/stream", params={"prompt": "a", "format": fmt}) as r:
            reads = r.aiter_raw()
            first = await anext(reads)
            assert b"one" in first and b"two" not in first
            provider.gates[1].set()
            second = await anext(reads)
            assert b"two" in second and b"three" not in second
            provider.open_all()
            rest = b"".join([chunk async for chunk in reads])
            assert b"four" in rest


async def test_failure_after_commit_truncates_the_text_body() -> None:
    settings = settings_from(
        FAST_FAKE + "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=3}\n"
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        received = b""
        async with http.stream("GET", "/stream", params={"prompt": "a", "model": "flaky"}) as r:
            assert r.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                async for chunk in r.aiter_raw():
                    received += chunk
        assert received.decode() == "".join(split_chunks(STORY, "word")[:3])
        # The server is still healthy for the next request.
        assert (await http.get("/healthz")).status_code == 200


async def test_failure_after_commit_is_an_sse_error_event_and_ndjson_error_line() -> None:
    settings = settings_from(
        FAST_FAKE + "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=2}\n"
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        sse = await http.get("/stream", params={"prompt": "a", "model": "flaky", "format": "sse"})
        events = [e for e in sse.text.split("\n\n") if e]
        assert len(events) == 3
        last = events[-1].split("\n")
        assert last[0] == "event: error"
        error = json.loads(last[1].removeprefix("data: "))
        assert error["type"] == "upstream_unavailable"
        assert last[2] == f"id: {sse.headers['x-stream-id']}:2"
        assert "event: done" not in sse.text

        nd = await http.get("/stream", params={"prompt": "a", "model": "flaky", "format": "ndjson"})
        lines = [json.loads(line) for line in nd.text.splitlines()]
        assert [set(line) for line in lines] == [{"text"}, {"text"}, {"error"}]
        assert lines[-1]["error"]["type"] == "upstream_unavailable"


class KeptGatedProvider(GatedProvider):
    """Keeps every stream it hands out, so that nothing but the gateway can close one: a
    dropped reference would otherwise let the garbage collector's finaliser close it."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_out: list[AsyncIterator[list[str]]] = []

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[list[str]]:
        stream = super().stream(request, outcome)
        self.handed_out.append(stream)
        return stream


async def test_client_disconnect_mid_stream_closes_the_provider_stream() -> None:
    provider = KeptGatedProvider()
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    provider.gates[0].set()
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/stream", params={"prompt": "a"}) as response:
            assert await anext(response.aiter_raw()) == b"one "
        # The client has hung up while the provider waits for gate 1.
        await wait_for(provider.closed)
        assert not provider.gates[1].is_set()
        assert app.state.gateway.drain.active == set()


async def test_client_disconnect_before_the_first_token_closes_the_provider_stream() -> None:
    provider = GatedProvider()
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        request = asyncio.ensure_future(http.get("/stream", params={"prompt": "a"}))
        await wait_for(provider.started)
        request.cancel()  # the client gives up while the gateway still primes
        with pytest.raises(asyncio.CancelledError):
            await request
        await wait_for(provider.closed)
        assert app.state.gateway.drain.active == set()
