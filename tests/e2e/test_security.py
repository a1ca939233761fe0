"""SPEC §7 on real sockets: keys, model allow-lists, limits (memory and Redis), CORS."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.providers.fake import FakeConfig
from gateway.settings import ConfigError
from tests.conftest import FAST_FAKE, REDIS_SLACK, ManualClock, settings_from, write_config
from tests.e2e.conftest import CountingFake, GatedProvider, RequestsLogged, wait_for
from tests.e2e.process import gateway_process
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

KEY, OTHER = "gw-frontend-key-123", "gw-batch-key-456"


def keys(**limits: object) -> str:
    extra = "".join(f"{name} = {value!r}\n" for name, value in limits.items())
    return (
        FAST_FAKE
        + "[models.other]\nprovider = 'fake'\n"
        + f"[keys.frontend]\nsha256 = '{hash_key(KEY)}'\nmodels = ['story']\n{extra}"
        + f"[keys.batch]\nsha256 = '{hash_key(OTHER)}'\n"
    )


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_requests_without_a_valid_key_never_reach_a_provider() -> None:
    fake = CountingFake(FakeConfig(chunk_delay_ms=0))
    app = create_app(settings_from(keys()), {"fake": fake})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        refused = [
            await http.post("/stream", json={"prompt": "x"}),
            await http.post("/stream", json={"prompt": "x"}, headers=bearer("wrong")),
            await http.get("/stream", params={"prompt": "x", "api_key": KEY}),
            await http.get("/stream", params={"prompt": "x", "key": KEY}),
            await http.post("/stream", json={"prompt": "x"}, auth=(KEY, "")),
            await http.post("/stream", json={"prompt": "x"}, headers={"Authorization": KEY}),
            await http.post("/stream", content=b"{not json", headers=bearer("wrong")),
            await http.get("/v1/models"),
            await http.post("/v1/chat/completions", json={"model": "story", "messages": []}),
        ]
        for response in refused:
            assert response.status_code == 401, response.text
            assert response.json()["error"]["type"] in ("unauthorized",)
            assert response.headers["www-authenticate"] == "Bearer"
        assert fake.calls == 0
        # Health and metrics stay open.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200
        # Both ways of sending a key work.
        assert (await http.post("/stream", json={"prompt": "x"}, headers=bearer())).is_success
        ok = await http.post("/stream", json={"prompt": "x"}, headers={"X-API-Key": OTHER})
        assert ok.is_success
        assert (await http.get("/v1/models", headers=bearer())).is_success
        assert fake.calls == 2


async def test_models_outside_the_keys_list_are_forbidden() -> None:
    fake = CountingFake(FakeConfig(chunk_delay_ms=0))
    app = create_app(settings_from(keys()), {"fake": fake})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        for model in ("other", "fake/anything"):
            response = await http.post(
                "/stream", json={"prompt": "x", "model": model}, headers=bearer()
            )
            assert response.status_code == 403
            assert response.json()["error"]["type"] == "model_not_allowed"
        batch = await http.post(
            "/stream", json={"prompt": "x", "model": "other"}, headers={"X-API-Key": OTHER}
        )
        assert batch.is_success  # a key without a list may use every model
    assert fake.calls == 1


def store_config(store: str, request: pytest.FixtureRequest) -> str:
    url = request.getfixturevalue("redis_url") if store == "redis" else None
    return f"redis_url = '{url}'\n{REDIS_SLACK}" if url else ""


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_requests_per_minute(store: str, request: pytest.FixtureRequest) -> None:
    clock = ManualClock()  # 30 s into a minute; it moves only when the test moves it
    app = create_app(settings_from(store_config(store, request) + keys(rpm=3)), clock=clock)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:

        async def post(key: str = KEY) -> httpx.Response:
            return await http.post("/stream", json={"prompt": "x"}, headers=bearer(key))

        statuses = [await post() for _ in range(4)]
        other = await post(OTHER)
        clock.advance(29)  # one second left in this window: still refused
        still = await post()
        clock.advance(1)  # the next minute: a new window
        next_window = [await post() for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    limited = statuses[-1]
    assert limited.json()["error"]["type"] == "rate_limited"
    assert limited.headers["retry-after"] == "30"  # the seconds left in the window
    assert "limit of 3 requests per minute" in limited.json()["error"]["message"]
    assert limited.headers["x-ratelimit-limit-requests"] == "3"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-ratelimit-reset-requests"] == f"{limited.headers['retry-after']}s"
    assert other.is_success  # limits are per key
    assert still.status_code == 429
    assert still.headers["retry-after"] == "1"
    assert [r.status_code for r in next_window] == [200, 200, 200, 429]


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_tokens_per_minute_from_reported_usage(
    store: str, request: pytest.FixtureRequest
) -> None:
    clock = ManualClock()
    settings = settings_from(store_config(store, request) + keys(tpm=50))
    app = create_app(settings, clock=clock)  # one story reports ~108 tokens
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        first = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
        second = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
        clock.advance(30)
        next_window = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["retry-after"] == "30"
    assert next_window.status_code == 200
    assert "limit of 50 tokens per minute" in second.json()["error"]["message"]
    assert second.headers["x-ratelimit-limit-tokens"] == "50"


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_concurrent_streams_slots_come_back_after_disconnects_and_errors(
    store: str, request: pytest.FixtureRequest
) -> None:
    settings = settings_from(
        store_config(store, request)
        + keys(max_concurrent_streams=1)
        + "[providers.real_fake]\ntype='fake'\n"
        + "[models.broken]\nprovider='real_fake'\nparams={fail_status=503}\n"
        + "[keys.frontend2]\n"
        + f"sha256 = '{hash_key('k3-abcdef')}'\nmax_concurrent_streams=1\n"
    )
    provider = GatedProvider()
    app = create_app(settings, {"fake": provider})
    provider.gates[0].set()
    with RequestsLogged() as logged:
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            await _slots_come_back(http, provider, logged)


async def _slots_come_back(
    http: httpx.AsyncClient, provider: GatedProvider, logged: RequestsLogged
) -> None:
    async with http.stream("POST", "/stream", json={"prompt": "x"}, headers=bearer()) as held:
        assert await anext(held.aiter_raw()) == b"one "
        second = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
        assert second.status_code == 429
        assert "limit of 1 concurrent streams" in second.json()["error"]["message"]
        assert second.headers["retry-after"] == "1"
    await wait_for(provider.closed)  # the first client left...
    await logged.reach(2)  # ...and its request has fully ended (slot given back)
    provider.open_all()
    again = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
    assert again.status_code == 200
    other = {"X-API-Key": "k3-abcdef"}
    for _ in range(3):  # errors before the first delta give the slot back too
        failed = await http.post("/stream", json={"prompt": "x", "model": "broken"}, headers=other)
        assert failed.status_code == 502
    assert (await http.post("/stream", json={"prompt": "x"}, headers=other)).is_success


async def test_a_dead_replicas_slot_comes_back_when_its_lease_expires(redis_url: str) -> None:
    settings = settings_from(
        f"redis_url = '{redis_url}'\n{REDIS_SLACK}" + keys(max_concurrent_streams=1)
    )
    client = aioredis.Redis.from_url(redis_url)
    now_ms = int(time.time() * 1000)
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        await client.zadd("gw:{frontend}:slots", {"lease-of-a-live-replica": now_ms + 60_000})
        held = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
        assert held.status_code == 429
        await client.zadd("gw:{frontend}:slots", {"lease-of-a-live-replica": now_ms - 1})  # expired
        freed = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
        assert freed.status_code == 200
    await client.aclose()


async def test_two_gateways_sharing_redis_enforce_one_limit(redis_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, f"redis_url = '{redis_url}'\n{REDIS_SLACK}" + keys(rpm=10))
    async with (
        gateway_process(config=config) as first,
        gateway_process(config=config) as second,
        httpx.AsyncClient() as http,
    ):

        async def one(base: str) -> int:
            response = await http.post(f"{base}/stream", json={"prompt": "x"}, headers=bearer())
            return response.status_code

        before = time.time()
        statuses = await asyncio.gather(*(one(g.url) for g in [first, second] * 10))
        after = time.time()
    assert set(statuses) <= {200, 429}
    if before // 60 == after // 60:  # the usual case: all in one window, shared by both
        assert statuses.count(200) == 10
    else:  # the processes keep real time and the run straddled a minute: two windows
        assert statuses.count(200) >= 10


@pytest.mark.parametrize(("failure", "status"), [("closed", 503), ("open", 200)])
async def test_redis_outage_follows_the_configured_behaviour(failure: str, status: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    settings = settings_from(
        f"redis_url = 'redis://127.0.0.1:{port}/0'\nredis_failure = '{failure}'\n" + keys(rpm=5)
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/readyz")).status_code == 200  # starts and stays healthy
        response = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
        metrics = (await http.get("/metrics")).text
    assert response.status_code == status
    if status == 503:
        assert response.json()["error"]["type"] == "unavailable"
    assert "gateway_limit_store_failures_total 1.0" in metrics


CORS = keys() + "[cors]\nallow_origins = ['http://localhost:5173']\n"


async def test_cors_preflight_and_exposed_headers_for_listed_origins_only() -> None:
    app = create_app(settings_from(CORS))
    preflight = {
        "Origin": "http://localhost:5173",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        allowed = await http.options("/stream", headers=preflight)
        refused = await http.options(
            "/stream", headers={**preflight, "Origin": "https://evil.test"}
        )
        simple = await http.post(
            "/stream", json={"prompt": "x"}, headers={**bearer(), "Origin": "http://localhost:5173"}
        )
        foreign = await http.post(
            "/stream", json={"prompt": "x"}, headers={**bearer(), "Origin": "https://evil.test"}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert simple.headers["access-control-allow-origin"] == "http://localhost:5173"
    exposed = simple.headers["access-control-expose-headers"].lower()
    assert {"x-request-id", "x-gateway-model", "x-gateway-provider"} <= set(exposed.split(", "))
    assert "access-control-allow-origin" not in foreign.headers


async def test_without_cors_configuration_no_cors_headers() -> None:
    async with serve(create_app(settings_from(FAST_FAKE))) as url, httpx.AsyncClient() as http:
        response = await http.post(
            f"{url}/stream", json={"prompt": "x"}, headers={"Origin": "http://localhost:5173"}
        )
    assert "access-control-allow-origin" not in response.headers


def test_wildcard_origins_and_bad_digests_fail_at_start_up() -> None:
    with pytest.raises(ConfigError, match="allow_origins"):
        settings_from("[cors]\nallow_origins = ['*']\n")
    with pytest.raises(ConfigError, match="sha256"):
        settings_from("[keys.a]\nsha256 = 'abc'\n")
    with pytest.raises(ConfigError, match="'ghost' is not a configured model"):
        settings_from(f"[keys.a]\nsha256 = '{hash_key('x')}'\nmodels = ['ghost']\n")


async def test_hash_key_reads_the_key_from_stdin() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "hash-key",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate(KEY.encode() + b"\n")
    assert process.returncode == 0
    assert out.decode().strip() == hash_key(KEY)


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_tokens_are_charged_while_a_long_stream_runs(
    store: str, request: pytest.FixtureRequest
) -> None:
    provider = GatedProvider(tuple("x" for _ in range(100)))
    settings = settings_from(store_config(store, request) + keys(tpm=50))
    app = create_app(settings, {"fake": provider}, clock=ManualClock())
    for gate in provider.gates[:70]:
        gate.set()
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("POST", "/stream", json={"prompt": "x"}, headers=bearer()) as run:
            received = b""
            async for chunk in run.aiter_raw():
                received += chunk
                if len(received) == 70:
                    break
            # 70 deltas relayed, the provider has reported no usage yet: the estimate already
            # holds the key's next request back.
            refused = await http.post("/stream", json={"prompt": "x"}, headers=bearer())
            provider.open_all()
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limited"
