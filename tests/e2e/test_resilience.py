"""SPEC §6 on real sockets: time-outs, fallbacks, disconnects, back-pressure."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gateway.app import create_app
from gateway.providers.fake import FakeConfig, load_story, split_chunks
from tests.conftest import CANARY_KEY, settings_from
from tests.e2e.conftest import CountingFake, wait_for
from tests.e2e.servers import Gate, Reply, UpstreamStub, serve

pytestmark = pytest.mark.e2e

STORY = load_story(None)


def event(text: str) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":%b}}]}\n\n' % json.dumps(text).encode()


END = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'


def provider(name: str, upstream: str, **options: object) -> str:
    extra = "".join(f"{key} = {value!r}\n" for key, value in options.items())
    return (
        f"[providers.{name}]\ntype = 'openai'\nbase_url = '{upstream}/v1'\n"
        f"api_key = '{CANARY_KEY}'\n{extra}"
    )


async def test_idle_timeout_after_first_delta_is_an_in_band_error() -> None:
    stub = UpstreamStub(Reply(body=[event("a"), Gate()]))
    async with serve(stub) as upstream:
        settings = settings_from(provider("up", upstream, idle_timeout=0.1))
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.get(
                "/stream", params={"prompt": "x", "model": "up/m", "format": "sse"}
            )
    events = [e for e in response.text.split("\n\n") if e]
    assert events[0].startswith('data: "a"')
    assert events[-1].startswith("event: error")
    assert '"type":"upstream_timeout"' in events[-1]


async def test_first_token_timeout_before_headers_is_a_504() -> None:
    stub = UpstreamStub(Reply(body=[event("late"), END], head_gate=Gate()))
    async with serve(stub) as upstream:
        settings = settings_from(provider("up", upstream, first_token_timeout=0.1))
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.get("/stream", params={"prompt": "x", "model": "up/m"})
            await wait_for(stub.hung_up)  # and the upstream request was abandoned
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"


async def test_fallback_to_another_upstream_names_the_entry_that_served() -> None:
    broken = UpstreamStub(Reply(503, "application/json", [b'{"error":{"message":"down"}}']))
    healthy = UpstreamStub(Reply(body=[event("from b"), END]))
    async with serve(broken) as up_a, serve(healthy) as up_b:
        settings = settings_from(
            provider("a", up_a)
            + provider("b", up_b)
            + "[models.main]\nprovider='a'\nfallbacks=['backup']\n"
            + "[models.backup]\nprovider='b'\n"
        )
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/stream", json={"prompt": "x", "model": "main"})
    assert response.text == "from b"
    assert response.headers["x-gateway-model"] == "backup"
    assert response.headers["x-gateway-provider"] == "b"
    assert len(broken.seen) == len(healthy.seen) == 1


async def test_failure_after_the_first_delta_does_not_switch_to_the_fallback() -> None:
    fake = CountingFake(FakeConfig(chunk_delay_ms=0))
    settings = settings_from(
        "[providers.fake]\ntype='fake'\nchunk_delay_ms=0\n"
        "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=3}\nfallbacks=['story']\n"
    )
    async with (
        serve(create_app(settings, {"fake": fake})) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        response = await http.get(
            "/stream", params={"prompt": "x", "model": "flaky", "format": "sse"}
        )
    events = [e for e in response.text.split("\n\n") if e]
    deltas = [json.loads(e.split("data: ", 1)[1].split("\n")[0]) for e in events[:-1]]
    assert "".join(deltas) == "".join(split_chunks(STORY, "word")[:3])  # no second answer
    assert events[-1].startswith("event: error")
    assert response.headers["x-gateway-model"] == "flaky"
    assert fake.calls == 1  # the fallback was never asked


async def test_rate_limited_entry_is_retried_when_its_provider_allows() -> None:
    stub = UpstreamStub(
        Reply(
            429, "application/json", [b'{"error":{"message":"slow"}}'], headers={"Retry-After": "0"}
        ),
        Reply(body=[event("ok"), END]),
    )
    async with serve(stub) as upstream:
        settings = settings_from(provider("up", upstream, retries=1))
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/stream", json={"prompt": "x", "model": "up/m"})
    assert response.text == "ok"
    assert len(stub.seen) == 2


async def test_disconnect_while_upstream_headers_are_pending_cancels_it() -> None:
    stub = UpstreamStub(Reply(body=[event("never")], head_gate=Gate()))
    async with serve(stub) as upstream:
        app = create_app(settings_from(provider("up", upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            request = asyncio.ensure_future(
                http.post("/stream", json={"prompt": "x", "model": "up/m"})
            )
            await wait_for(stub.requested)  # the upstream has it: the gateway is waiting
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            await wait_for(stub.hung_up)
            assert app.state.gateway.drain.active == set()


async def test_hundred_connect_disconnect_cycles_return_to_baseline() -> None:
    stub = UpstreamStub(Reply(body=[event("first"), Gate()]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(provider("up", upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            for _ in range(100):
                async with http.stream(
                    "POST", "/stream", json={"prompt": "x", "model": "up/m"}
                ) as response:
                    assert await anext(response.aiter_raw()) == b"first"
            while stub.hang_ups < 100:  # every upstream request was hung up on
                await asyncio.wait_for(stub.hung_up.wait(), 10)
                stub.hung_up.clear()
            transport = app.state.gateway.providers["up"].adapter._client._transport
            assert transport.open_connections() == 0
            assert app.state.gateway.drain.active == set()
            assert stub.open_streams == 0


async def test_slow_reader_slows_the_upstream_and_loses_nothing() -> None:
    piece = event("x" * 60_000)
    count = 3000  # ~180 MB of events: far more than all the buffers on the way
    stub = UpstreamStub(Reply(body=[piece] * count + [END]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(provider("up", upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            async with http.stream(
                "POST", "/stream", json={"prompt": "x", "model": "up/m"}
            ) as response:
                reads = response.aiter_raw()
                received = len(await anext(reads))
                # The client stops reading; the upstream must stall (a guard: it can never
                # finish while nobody reads).
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(2):
                        await stub.finished.wait()
                assert stub.sent < count * len(piece)
                async for chunk in reads:
                    received += len(chunk)
    assert received == count * 60_000
