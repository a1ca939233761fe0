"""SPEC §7: a concurrent-stream slot is held from admission to the end of the response,
whatever ends it.

One key with one slot. Each case ends one stream in one of the ways a stream can end, on a
real socket, waits until that request has fully ended, and then the key must be able to open
a stream again at once: a slot kept by any exit path would refuse it with 429. When Redis
fails to take the slot back, it comes back when its lease expires (the test moves the
limiter's clock), and is no longer renewed meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.lifecycle import Drain
from gateway.limits import Limiter
from gateway.providers.base import ChatRequest, StreamOutcome
from gateway.providers.fake import load_story
from tests.conftest import CANARY_KEY, REDIS_SLACK, ManualClock, settings_from
from tests.e2e.conftest import RequestsLogged, wait_for
from tests.e2e.servers import Gate, Reply, UpstreamStub, serve

pytestmark = pytest.mark.e2e

STORY = load_story(None)
KEY = "gw-lease-key-0123456789"
LEASE_TTL_S = 60  # the default lease_ttl_s


class Held:
    """A test adapter that stops where the test wants it: before its first delta (`first` is
    None) or after it, until `release` is set. `waiting` says it got there."""

    def __init__(self, first: str | None, crash: bool = False) -> None:
        self.first = first
        self.crash = crash  # then fail as no adapter may: a bug, not an upstream error
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.closed = asyncio.Event()

    async def stream(
        self, request: ChatRequest, outcome: StreamOutcome
    ) -> AsyncIterator[list[str]]:
        try:
            if self.first is not None:
                yield [self.first]
            if self.crash:
                raise RuntimeError("a bug in the adapter")
            self.waiting.set()
            await self.release.wait()
            yield ["two "]
            outcome.finish_reason = "stop"
        finally:
            self.closed.set()

    async def aclose(self) -> None:
        return None


def config(upstream: str, redis_url: str | None) -> str:
    openai = f"type = 'openai'\nbase_url = '{upstream}/v1'\napi_key = '{CANARY_KEY}'\n"
    return (
        (f"redis_url = '{redis_url}'\n{REDIS_SLACK}" if redis_url else "")
        + "[providers.fake]\ntype = 'fake'\nchunk_delay_ms = 0\n"
        + "[providers.before]\ntype = 'fake'\n"
        + "[providers.after]\ntype = 'fake'\n"
        + "[providers.silent]\ntype = 'fake'\nfirst_token_timeout = 0.05\n"
        + "[providers.bounded]\ntype = 'fake'\ntotal_timeout = 1.0\n"
        + "[providers.buggy]\ntype = 'fake'\n"
        + f"[providers.up]\n{openai}"
        + f"[providers.idle]\n{openai}idle_timeout = 0.2\n"
        + "[models.broken]\nprovider = 'fake'\nparams = { fail_status = 503 }\n"
        + "[models.flaky]\nprovider = 'fake'\nparams = { fail_after_chunks = 3 }\n"
        + f"[keys.frontend]\nsha256 = '{hash_key(KEY)}'\n"
        + "max_concurrent_streams = 1\ntpm = 1000000\n"
    )


@dataclass
class Run:
    """A live gateway, its upstreams, and the requests sent to it (all with the key)."""

    http: httpx.AsyncClient
    app: FastAPI
    clock: ManualClock
    stub: UpstreamStub
    held: dict[str, Held]
    logged: RequestsLogged
    redis: aioredis.Redis | None
    sent: int = 0
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {KEY}"})

    @property
    def limiter(self) -> Limiter:
        limiter: Limiter = self.app.state.gateway.limiter
        return limiter

    @property
    def drain(self) -> Drain:
        drain: Drain = self.app.state.gateway.drain
        return drain

    async def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        self.sent += 1
        return await self.http.request(method, path, headers=self.headers, **options)

    def start(self, method: str, path: str, **options: Any) -> asyncio.Future[httpx.Response]:
        return asyncio.ensure_future(self.request(method, path, **options))

    def stream(self, method: str, path: str, **options: Any) -> Any:
        self.sent += 1
        return self.http.stream(method, path, headers=self.headers, **options)

    async def sse_events(self, model: str) -> list[str]:
        params = {"prompt": "x", "model": model, "format": "sse"}
        response = await self.request("GET", "/stream", params=params)
        assert response.status_code == 200, response.text
        return [event for event in response.text.split("\n\n") if event]

    async def settled(self) -> None:
        """Every request sent so far has fully ended (response, slot, metrics)."""
        await self.logged.reach(self.sent)

    async def store_failures(self) -> float:
        metrics = (await self.request("GET", "/metrics")).text
        found = re.search(r"^gateway_limit_store_failures_total (\S+)$", metrics, re.MULTILINE)
        assert found is not None
        return float(found.group(1))

    async def deny(self, *commands: str) -> None:
        """Make the real Redis refuse these commands to the gateway (an ACL on its user)."""
        assert self.redis is not None
        await self.redis.execute_command("ACL", "SETUSER", "default", *(f"-{c}" for c in commands))

    async def allow_all(self) -> None:
        if self.redis is not None:
            await self.redis.execute_command("ACL", "SETUSER", "default", "+@all")


@asynccontextmanager
async def running(redis_url: str | None) -> AsyncIterator[Run]:
    clock, stub = ManualClock(), UpstreamStub()
    held = {name: Held(None if name == "before" else "one ") for name in ("before", "after")}
    held["silent"], held["bounded"] = Held(None), Held("one ")
    held["buggy"] = Held("one ", crash=True)
    client = aioredis.Redis.from_url(redis_url) if redis_url else None
    with RequestsLogged() as logged:
        async with serve(stub) as upstream:
            app = create_app(settings_from(config(upstream, redis_url)), dict(held), clock=clock)
            async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
                run = Run(http, app, clock, stub, held, logged, client)
                try:
                    yield run
                finally:
                    await run.allow_all()
                    for adapter in held.values():
                        adapter.release.set()
    if client is not None:
        await client.aclose()


def openai_event(text: str) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":%b}}]}\n\n' % json.dumps(text).encode()


def error_type(event: str) -> str:
    assert event.startswith("event: error"), event
    data = event.split("data: ", 1)[1].split("\n", 1)[0]
    kind: str = json.loads(data)["type"]
    return kind


# The ways a stream ends. Each runs one stream to its end and checks that it ended that way.


async def complete(run: Run) -> None:
    response = await run.request("POST", "/stream", json={"prompt": "x"})
    assert response.text == STORY


async def client_gone_before_the_first_delta(run: Run) -> None:
    request = run.start("POST", "/stream", json={"prompt": "x", "model": "before/m"})
    await wait_for(run.held["before"].waiting)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await wait_for(run.held["before"].closed)


async def client_gone_after_the_first_delta(run: Run) -> None:
    async with run.stream("POST", "/stream", json={"prompt": "x", "model": "after/m"}) as sent:
        assert await anext(sent.aiter_raw()) == b"one "
    await wait_for(run.held["after"].closed)


async def upstream_error_before_the_first_delta(run: Run) -> None:
    response = await run.request("POST", "/stream", json={"prompt": "x", "model": "broken"})
    assert response.status_code == 502


async def upstream_error_after_the_first_delta(run: Run) -> None:
    with pytest.raises(httpx.RemoteProtocolError):  # the text body is truncated
        await run.request("POST", "/stream", json={"prompt": "x", "model": "flaky"})


async def first_token_timeout(run: Run) -> None:
    response = await run.request("POST", "/stream", json={"prompt": "x", "model": "silent/m"})
    assert response.status_code == 504


async def idle_timeout(run: Run) -> None:
    run.stub.reply(Reply(body=[openai_event("a"), Gate()]))
    events = await run.sse_events("idle/m")
    assert events[0].startswith('data: "a"')
    assert error_type(events[-1]) == "upstream_timeout"


async def total_timeout(run: Run) -> None:
    events = await run.sse_events("bounded/m")
    assert events[0].startswith('data: "one "')
    assert error_type(events[-1]) == "upstream_timeout"


async def in_band_error(run: Run) -> None:
    error = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    run.stub.reply(Reply(body=[openai_event("a"), error]))
    events = await run.sse_events("up/m")
    assert events[0].startswith('data: "a"')
    assert error_type(events[-1]).startswith("upstream_")


async def adapter_bug_after_the_first_delta(run: Run) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await run.request("POST", "/stream", json={"prompt": "x", "model": "buggy/m"})


async def shutdown_interrupt(run: Run) -> None:
    params = {"prompt": "x", "model": "after/m", "format": "sse"}
    async with run.stream("GET", "/stream", params=params) as sent:
        body = sent.aiter_text()
        assert (await anext(body)).startswith('data: "one "')
        run.drain.interrupt_all()  # what the drain does when the grace period is over
        rest = "".join([text async for text in body])
    assert error_type(rest.strip()) == "unavailable"


async def refused_while_draining(run: Run) -> None:
    run.drain.draining = True
    response = await run.request("POST", "/stream", json={"prompt": "x"})
    run.drain.draining = False
    assert response.status_code == 503


CHAT = {"messages": [{"role": "user", "content": "x"}]}


async def completion_complete(run: Run) -> None:
    response = await run.request("POST", "/v1/chat/completions", json={"model": "story", **CHAT})
    assert response.json()["choices"][0]["message"]["content"] == STORY


async def completion_client_gone_after_the_first_delta(run: Run) -> None:
    request = run.start("POST", "/v1/chat/completions", json={"model": "after/m", **CHAT})
    await wait_for(run.held["after"].waiting)  # the gateway is collecting the answer
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await wait_for(run.held["after"].closed)


async def completion_upstream_error_after_the_first_delta(run: Run) -> None:
    response = await run.request("POST", "/v1/chat/completions", json={"model": "flaky", **CHAT})
    assert response.status_code == 502


async def completion_shutdown_interrupt(run: Run) -> None:
    request = run.start("POST", "/v1/chat/completions", json={"model": "after/m", **CHAT})
    await wait_for(run.held["after"].waiting)
    run.drain.interrupt_all()
    assert (await request).status_code == 503


Ending = Callable[[Run], Awaitable[None]]
ENDINGS: list[Ending] = [
    complete,
    client_gone_before_the_first_delta,
    client_gone_after_the_first_delta,
    upstream_error_before_the_first_delta,
    upstream_error_after_the_first_delta,
    first_token_timeout,
    idle_timeout,
    total_timeout,
    in_band_error,
    adapter_bug_after_the_first_delta,
    shutdown_interrupt,
    refused_while_draining,
    completion_complete,
    completion_client_gone_after_the_first_delta,
    completion_upstream_error_after_the_first_delta,
    completion_shutdown_interrupt,
]


async def redis_fails_during_release(run: Run) -> None:
    await run.deny("zrem")
    await complete(run)
    await run.settled()
    assert await run.store_failures() == 1
    assert run.limiter.live == set()  # no longer renewed...
    still = await run.request("POST", "/stream", json={"prompt": "x"})
    assert still.status_code == 429  # ...and still held in Redis...
    run.clock.advance(LEASE_TTL_S + 1)  # ...until its lease expires


async def redis_fails_during_charge(run: Run) -> None:
    await run.deny("incrby")  # the running charges and the settlement at the end
    await complete(run)
    await run.settled()
    assert await run.store_failures() >= 1


async def redis_fails_during_renew(run: Run) -> None:
    async with run.stream("POST", "/stream", json={"prompt": "x", "model": "after/m"}) as sent:
        body = sent.aiter_raw()
        assert await anext(body) == b"one "
        await run.deny("zadd")
        await run.limiter.renew_live()  # one round of the lease keeper, failing
        await run.allow_all()
        assert len(run.limiter.live) == 1  # the stream still holds its slot
        run.held["after"].release.set()
        assert b"".join([chunk async for chunk in body]) == b"two "
    assert await run.store_failures() == 1


REDIS_ENDINGS: list[Ending] = [
    redis_fails_during_release,
    redis_fails_during_charge,
    redis_fails_during_renew,
]


async def check_the_slot_came_back(run: Run) -> None:
    await run.settled()
    assert run.limiter.live == set()  # nothing left for the keeper to renew
    await run.allow_all()
    again = await run.request("POST", "/stream", json={"prompt": "x"})
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("ending", ENDINGS, ids=lambda ending: ending.__name__)
@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_the_slot_comes_back_however_the_stream_ends(
    store: str, ending: Ending, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    async with running(redis_url) as run:
        await ending(run)
        await check_the_slot_came_back(run)


@pytest.mark.parametrize("ending", REDIS_ENDINGS, ids=lambda ending: ending.__name__)
async def test_the_slot_comes_back_when_redis_fails(redis_url: str, ending: Ending) -> None:
    async with running(redis_url) as run:
        await ending(run)
        await check_the_slot_came_back(run)
