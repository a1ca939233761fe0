"""SPEC §4.5 through real gateway processes on real sockets, with real redis-servers: drop and
resume on the same and on another replica, orphan time-out, cancel, owners, a dead producer,
Redis down or failing, and a three-node Redis Cluster."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent

from gateway.auth import hash_key
from tests.conftest import CANARY_KEY, REDIS_SLACK, write_config
from tests.e2e.conftest import wait_for
from tests.e2e.process import GatewayProcess, gateway_process
from tests.e2e.servers import Gate, Reply, UpstreamStub, serve
from tests.redis_servers import free_port, redis_cluster, standalone_redis

pytestmark = pytest.mark.e2e

GUARD_S = 20
WORDS = [f"word{i} " for i in range(12)]
TEXT = "".join(WORDS)
KEY, OTHER = "gw-resume-key-0001", "gw-resume-key-0002"
END = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'


def chunk(text: str) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":%b}}]}\n\n' % json.dumps(text).encode()


class Script:
    """An upstream answer in three parts, each released by a gate the test opens."""

    def __init__(self) -> None:
        self.gates = [Gate(), Gate()]
        body: list[bytes | Gate] = [chunk(w) for w in WORDS[:3]]
        body += [self.gates[0], *(chunk(w) for w in WORDS[3:8])]
        body += [self.gates[1], *(chunk(w) for w in WORDS[8:]), END]
        self.stub = UpstreamStub(Reply(body=body))

    def open_all(self) -> None:
        for gate in self.gates:
            gate.open()


def config(
    tmp_path: Path,
    upstream: str,
    redis_url: str | None = None,
    extra: str = "",
    orphan_s: float = 15,
    idle_s: float = 5,
) -> Path:
    text = f"redis_url = '{redis_url}'\n{REDIS_SLACK}" if redis_url else ""
    text += extra
    text += (
        f"[providers.up]\ntype = 'openai'\nbase_url = '{upstream}/v1'\napi_key = '{CANARY_KEY}'\n"
        f"idle_timeout = {idle_s}\n[models.chat]\nprovider = 'up'\nmodel = 'm'\n"
        f"[resume]\norphan_timeout_s = {orphan_s}\n"
    )
    return write_config(tmp_path, text)


KEYS = (
    f"[keys.alice]\nsha256 = '{hash_key(KEY)}'\nrpm = 1000\n"
    f"[keys.bob]\nsha256 = '{hash_key(OTHER)}'\n"
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


START = {"prompt": "hi", "model": "chat", "format": "sse", "resumable": "true"}


@asynccontextmanager
async def replicas(path: Path, count: int) -> AsyncIterator[list[GatewayProcess]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(gateway_process(config=path)) for _ in range(count)]


async def take(events: AsyncIterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    async with asyncio.timeout(GUARD_S):
        return [await anext(events) for _ in range(count)]


async def rest(events: AsyncIterator[ServerSentEvent]) -> list[ServerSentEvent]:
    async with asyncio.timeout(GUARD_S):
        return [event async for event in events]


def texts(events: list[ServerSentEvent]) -> str:
    return "".join(json.loads(e.data) for e in events if e.event == "message")


def seqs(events: list[ServerSentEvent]) -> list[int]:
    return [int(e.id.rsplit(":", 1)[1]) for e in events]


@asynccontextmanager
async def sse(
    http: httpx.AsyncClient, method: str, url: str, **kwargs: object
) -> AsyncIterator[tuple[httpx.Response, AsyncIterator[ServerSentEvent]]]:
    async with http.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        yield response, _events(EventSource(response).aiter_sse())


async def _events(source: AsyncIterator[ServerSentEvent]) -> AsyncIterator[ServerSentEvent]:
    async for event in source:
        if event.retry is not None and not event.data:
            continue  # httpx-sse reports the `retry:` field alone as an event; browsers do not
        yield event


async def drop_after_three(http: httpx.AsyncClient, url: str) -> tuple[str, list[ServerSentEvent]]:
    """Start a resumable stream, read three events, and leave."""
    async with sse(http, "GET", f"{url}/stream", params=START) as (response, events):
        assert response.headers["x-stream-resumable"] == "true"
        first = await take(events, 3)
    return response.headers["x-stream-id"], first


@pytest.mark.parametrize(
    ("store", "where"), [("memory", "same"), ("redis", "same"), ("redis", "other")]
)
async def test_drop_and_resume_is_exactly_the_uninterrupted_stream(
    store: str, where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    script = Script()
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    async with serve(script.stub) as upstream:
        path = config(tmp_path, upstream, redis_url)
        async with (
            replicas(path, 2 if where == "other" else 1) as gateways,
            httpx.AsyncClient() as http,
        ):
            stream_id, first = await drop_after_three(http, gateways[0].url)
            script.gates[0].open()  # the generation goes on with no reader
            headers = {"Last-Event-ID": first[-1].id, "Accept": "text/event-stream"}
            async with sse(http, "GET", f"{gateways[-1].url}/stream", headers=headers) as (
                response,
                events,
            ):
                assert response.headers["x-stream-id"] == stream_id
                assert response.headers["x-gateway-model"] == "chat"
                replayed = await take(events, 1)
                script.gates[1].open()  # and live from here
                second = replayed + await rest(events)
            metrics = (await http.get(f"{gateways[-1].url}/metrics")).text
    everything = first + second
    assert texts(everything) == TEXT
    assert seqs(everything) == list(range(len(WORDS) + 1))
    assert everything[-1].event == "done"
    assert json.loads(everything[-1].data)["finish_reason"] == "stop"
    assert len(script.stub.seen) == 1  # one generation, paid once
    assert 'gateway_reconnections_total{result="resumed"} 1.0' in metrics


async def test_retry_comes_before_the_first_event(tmp_path: Path) -> None:
    script = Script()
    script.open_all()
    async with serve(script.stub) as upstream:
        async with (
            gateway_process(config=config(tmp_path, upstream)) as gateway,
            httpx.AsyncClient(base_url=gateway.url) as http,
        ):
            response = await http.get("/stream", params=START)
            text_mode = await http.get("/stream", params={**START, "format": "text"})
            after_end = await http.get(
                "/stream", headers={"Last-Event-ID": f"{response.headers['x-stream-id']}:12"}
            )
    assert response.text.startswith("retry: 1000\n\ndata: ")
    assert text_mode.status_code == 422
    assert after_end.status_code == 204  # the last event's id: nothing left to send


async def test_an_orphan_is_cancelled_and_a_returning_reader_keeps_it(tmp_path: Path) -> None:
    script = Script()
    async with serve(script.stub) as upstream:
        path = config(tmp_path, upstream, orphan_s=2)
        async with gateway_process(config=path) as gateway, httpx.AsyncClient() as http:
            # Returning inside the window: the generation survives past it.
            _stream_id, first = await drop_after_three(http, gateway.url)
            headers = {"Last-Event-ID": first[-1].id}
            async with sse(http, "GET", f"{gateway.url}/stream", headers=headers) as (_, events):
                await asyncio.sleep(4)  # not a synchronisation: lets the orphan window pass
                assert not script.stub.hung_up.is_set()
                script.open_all()
                kept = await rest(events)
            assert kept[-1].event == "done"
            assert texts(first + kept) == TEXT

            # Nobody returns: the upstream is cancelled.
            script.stub.replies[:] = Script().stub.replies  # gates nobody opens
            _, first = await drop_after_three(http, gateway.url)
            await wait_for(script.stub.hung_up)
            resumed = await http.get(
                f"{gateway.url}/stream", headers={"Last-Event-ID": first[-1].id}
            )
            metrics = (await http.get(f"{gateway.url}/metrics")).text
    assert 'event: error\ndata: {"type":"cancelled"' in resumed.text
    assert "gateway_orphan_cancellations_total 1.0" in metrics


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_cancel_ends_every_reader_and_only_the_owner_may(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    script = Script()
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    async with serve(script.stub) as upstream:
        path = config(tmp_path, upstream, redis_url, extra=KEYS)
        count = 2 if store == "redis" else 1
        async with replicas(path, count) as gateways, httpx.AsyncClient() as http:
            first, last = gateways[0].url, gateways[-1].url
            params = START
            async with (
                sse(http, "GET", f"{first}/stream", params=params, headers=bearer(KEY)) as (
                    response,
                    owner_events,
                ),
            ):
                stream_id = response.headers["x-stream-id"]
                await take(owner_events, 3)
                resume = {"Last-Event-ID": f"{stream_id}:0"}
                # Another key can neither read nor cancel it, on any replica.
                for url in (first, last):
                    stolen = await http.get(f"{url}/stream", headers={**resume, **bearer(OTHER)})
                    assert stolen.status_code == 404
                    assert stolen.json()["error"]["type"] == "not_found"
                    assert "data:" not in stolen.text
                    by_path = await http.get(f"{url}/stream/{stream_id}", headers=bearer(OTHER))
                    assert by_path.status_code == 404
                    refused = await http.post(
                        f"{url}/stream/{stream_id}/cancel", headers=bearer(OTHER)
                    )
                    assert refused.status_code == 404
                async with sse(
                    http, "GET", f"{last}/stream", headers={**resume, **bearer(KEY)}
                ) as (_, second_events):
                    await take(second_events, 2)  # events 1 and 2, replayed
                    cancel = await http.post(
                        f"{last}/stream/{stream_id}/cancel", headers=bearer(KEY)
                    )
                    assert cancel.status_code == 204
                    ends = [(await rest(owner_events))[-1], (await rest(second_events))[-1]]
            await wait_for(script.stub.hung_up)
            again = await http.post(f"{first}/stream/{stream_id}/cancel", headers=bearer(KEY))
    for end in ends:
        assert end.event == "error"
        assert json.loads(end.data)["type"] == "cancelled"
    assert again.status_code == 404
    assert len(script.stub.seen) == 1


async def test_a_dead_producer_ends_readers_elsewhere_in_band(
    tmp_path: Path, redis_url: str
) -> None:
    script = Script()
    async with serve(script.stub) as upstream:
        path = config(tmp_path, upstream, redis_url, idle_s=1.5)
        async with replicas(path, 2) as (producer, other), httpx.AsyncClient() as http:
            _stream_id, first = await drop_after_three(http, producer.url)
            headers = {"Last-Event-ID": first[-1].id}
            async with sse(http, "GET", f"{other.url}/stream", headers=headers) as (_, events):
                producer.process.kill()  # SIGKILL: no goodbye, the heartbeat just stops
                ending = await rest(events)
    assert [e.event for e in ending] == ["error"]
    assert json.loads(ending[0].data)["type"] == "upstream_unavailable"
    assert seqs(ending) == [3]


async def test_redis_down_at_start_serves_a_plain_stream(tmp_path: Path) -> None:
    script = Script()
    script.open_all()
    async with serve(script.stub) as upstream:
        path = config(tmp_path, upstream, f"redis://127.0.0.1:{free_port()}/0")
        async with (
            gateway_process(config=path) as gateway,
            httpx.AsyncClient(base_url=gateway.url) as http,
        ):
            response = await http.get("/stream", params=START)
            stream_id = response.headers["x-stream-id"]
            again = await http.get("/stream", headers={"Last-Event-ID": f"{stream_id}:1"})
            metrics = (await http.get("/metrics")).text
    assert response.status_code == 200
    assert response.headers["x-stream-resumable"] == "false"
    assert not response.text.startswith("retry:")
    assert "event: done" in response.text
    assert again.status_code == 204
    assert "gateway_resume_store_failures_total 0.0" not in metrics


async def test_redis_failing_mid_stream_does_not_cut_live_readers(tmp_path: Path) -> None:
    script = Script()
    async with serve(script.stub) as upstream:
        with standalone_redis() as (redis_url, redis_process):
            path = config(tmp_path, upstream, redis_url)
            async with (
                gateway_process(config=path) as gateway,
                httpx.AsyncClient(base_url=gateway.url) as http,
                sse(http, "GET", "/stream", params=START) as (response, events),
            ):
                assert response.headers["x-stream-resumable"] == "true"
                first = await take(events, 3)
                redis_process.kill()
                redis_process.wait()
                script.open_all()
                later = await rest(events)
    assert texts(first + later) == TEXT
    assert later[-1].event == "done"


async def test_a_redis_cluster_holds_streams_and_limits(tmp_path: Path) -> None:
    script = Script()
    with redis_cluster(tmp_path) as redis_url:
        async with serve(script.stub) as upstream:
            limits = f"[keys.alice]\nsha256 = '{hash_key(KEY)}'\nrpm = 2\nmax_concurrent_streams = 2\ntpm = 100000\n"
            path = config(tmp_path, upstream, redis_url, extra="redis_cluster = true\n" + limits)
            async with replicas(path, 2) as (one, two), httpx.AsyncClient() as http:
                async with sse(
                    http, "GET", f"{one.url}/stream", params=START, headers=bearer(KEY)
                ) as (
                    _response,
                    events,
                ):
                    first = await take(events, 3)
                script.open_all()
                headers = {"Last-Event-ID": first[-1].id, **bearer(KEY)}
                resumed = await http.get(f"{two.url}/stream", headers=headers)
                assert resumed.status_code == 200
                ok = await http.get(
                    f"{two.url}/stream",
                    params={"prompt": "x", "model": "chat"},
                    headers=bearer(KEY),
                )
                limited = await http.get(
                    f"{one.url}/stream",
                    params={"prompt": "x", "model": "chat"},
                    headers=bearer(KEY),
                )
                metrics = (await http.get(f"{one.url}/metrics")).text + (
                    await http.get(f"{two.url}/metrics")
                ).text
    second = [
        json.loads(line[6:]) for line in resumed.text.splitlines() if line.startswith('data: "')
    ]
    assert "".join(json.loads(e.data) for e in first) + "".join(second) == TEXT
    assert "event: done" in resumed.text
    assert ok.status_code == 200
    assert limited.status_code == 429  # the third request of the minute, counted across replicas
    failures = re.findall(r"^gateway_\w+_failures_total (\S+)$", metrics, re.MULTILINE)
    # Neither the limits, nor the log, nor the cooldowns' store fell over, on either.
    assert failures == ["0.0"] * 6


async def test_event_source_tokens_never_reach_a_log_line(tmp_path: Path) -> None:
    script = Script()
    script.open_all()
    async with serve(script.stub) as upstream:
        path = config(tmp_path, upstream, extra=KEYS)
        async with (
            gateway_process("--log-format", "json", config=path) as gateway,
            httpx.AsyncClient(base_url=gateway.url) as http,
        ):
            issued = await http.post("/stream/tokens", headers=bearer(KEY))
            token = issued.json()["token"]
            started = await http.get("/stream", params={**START, "token": token})
            stream_id = started.headers["x-stream-id"]
            resumed = await http.get(f"/stream/{stream_id}", params={"after": 5, "token": token})
            wrong = await http.get("/stream", params={**START, "token": token + "x"})
            await http.get("/healthz")  # its line comes after every earlier request's
    assert started.status_code == 200 and resumed.status_code == 200
    assert resumed.text.startswith("retry: 1000\n\ndata: ")
    assert wrong.status_code == 401
    log = "\n".join(gateway.log)
    assert '"message":"stream resumed"' in log
    assert token not in log and token.rsplit(".", 1)[1] not in log and KEY not in log
