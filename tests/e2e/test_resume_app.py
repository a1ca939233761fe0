"""Resumable streams in-process on real sockets, with a gated test adapter: shutdown, the
byte cap, `enabled = false`, tokens across replicas, and the log's own counters."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import hash_key
from tests.conftest import FAST_FAKE, REDIS_SLACK, settings_from
from tests.e2e.conftest import GatedProvider, wait_for
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

START = {"prompt": "hi", "format": "sse", "resumable": "true"}
KEY = "gw-resume-app-key-01"


def frames(text: str) -> list[str]:
    return [frame for frame in text.split("\n\n") if frame]


async def test_shutdown_ends_a_generation_for_its_readers() -> None:
    gated = GatedProvider()
    app = create_app(settings_from(FAST_FAKE), {"fake": gated})
    gated.gates[0].set()  # the first delta: the commit point
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/stream", params=START) as response:
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 1000"
            app.state.drain.begin(0)  # the grace is over at once
            body = "\n".join([line async for line in lines])
        stream_id = response.headers["x-stream-id"]
        # Reading what is already generated is still welcome while draining.
        late = await http.get(f"/stream/{stream_id}")
        new = await http.get("/stream", params=START)
    await wait_for(gated.closed)
    assert 'event: error\ndata: {"type":"unavailable"' in body
    assert "event: done" not in body
    assert late.status_code == 200 and '"type":"unavailable"' in late.text
    assert new.status_code == 503


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_past_the_byte_cap_a_stream_stays_live_but_is_not_resumable(
    store: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if store == "redis" else None
    extra = f"redis_url = '{url}'\n{REDIS_SLACK}" if url else ""
    settings = settings_from(extra + FAST_FAKE + "[resume]\nresume_max_bytes = 200\n")
    async with (
        serve(create_app(settings)) as url,
        serve(create_app(settings)) as other,  # a replica that only knows what Redis says
        httpx.AsyncClient(base_url=url) as http,
    ):
        whole = await http.get("/stream", params=START)
        plain = await http.get("/stream", params={**START, "resumable": "false"})
        stream_id = whole.headers["x-stream-id"]
        again = await http.get("/stream", headers={"Last-Event-ID": f"{stream_id}:3"})
        elsewhere = await http.get(f"{other}/stream", headers={"Last-Event-ID": f"{stream_id}:3"})
    assert whole.headers["x-stream-resumable"] == "true"
    texts = [json.loads(f.split("\n")[0][6:]) for f in frames(whole.text)[1:-1]]
    assert "".join(texts) == "".join(
        json.loads(f.split("\n")[0][6:]) for f in frames(plain.text)[:-1]
    )
    assert frames(whole.text)[-1].startswith("event: done")
    assert again.status_code == 204
    assert elsewhere.status_code == 204


async def test_disabled_resumption_serves_plain_streams() -> None:
    settings = settings_from(FAST_FAKE + "[resume]\nenabled = false\n")
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/stream", params=START)
        again = await http.get(
            "/stream", headers={"Last-Event-ID": f"{response.headers['x-stream-id']}:1"}
        )
    assert response.headers["x-stream-resumable"] == "false"
    assert response.text.startswith("data: ")
    assert again.status_code == 204


@pytest.mark.parametrize("shared_secret", [True, False])
async def test_tokens_work_on_every_replica_with_a_shared_secret(
    shared_secret: bool, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TOKEN_SECRET", "the-replicas-shared-secret")
    toml = (
        f"redis_url = '{redis_url}'\n{REDIS_SLACK}"
        + FAST_FAKE
        + f"[keys.web]\nsha256 = '{hash_key(KEY)}'\n"
    )
    if shared_secret:
        toml = "token_secret_env = 'GW_TOKEN_SECRET'\n" + toml
    one, two = create_app(settings_from(toml)), create_app(settings_from(toml))
    async with serve(one) as first, serve(two) as second, httpx.AsyncClient() as http:
        issued = await http.post(f"{first}/stream/tokens", headers={"X-API-Key": KEY})
        token = issued.json()["token"]
        started = await http.get(f"{first}/stream", params={**START, "token": token})
        stream_id = started.headers["x-stream-id"]
        elsewhere = await http.get(
            f"{second}/stream",
            params={**START, "token": token},
            headers={"Last-Event-ID": f"{stream_id}:2"},
        )
    assert issued.json()["expires_in"] == 60
    assert KEY not in token
    assert started.status_code == 200
    if shared_secret:
        assert elsewhere.status_code == 200
        assert frames(elsewhere.text)[1].split("\n")[1] == f"id: {stream_id}:3"
    else:
        assert elsewhere.status_code == 401


async def test_an_open_gateway_issues_tokens_and_ignores_them() -> None:
    async with serve(create_app(settings_from(FAST_FAKE))) as url, httpx.AsyncClient() as http:
        issued = await http.post(f"{url}/stream/tokens")
        token = issued.json()["token"]
        started = await http.get(f"{url}/stream", params={**START, "token": token})
        garbage = await http.get(f"{url}/stream", params={**START, "token": "x"})
    assert issued.status_code == 200 and token
    assert started.status_code == 200 and garbage.status_code == 200


async def test_cancel_routes_refuse_what_is_not_running() -> None:
    gated = GatedProvider()
    app = create_app(settings_from(FAST_FAKE), {"fake": gated})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        unknown = await http.post("/stream/AAAAAAAAAAAAAAAAAAAAAA/cancel")
        bad = await http.post("/stream/a{b}/cancel")
        bad_after = await http.get("/stream/AAAAAAAAAAAAAAAAAAAAAA", params={"after": "x"})
        extra = await http.get("/stream/AAAAAAAAAAAAAAAAAAAAAA", params={"since": "1"})
        gone = await http.get("/stream/AAAAAAAAAAAAAAAAAAAAAA")
        gated.open_all()
        done = await http.get("/stream", params=START)
        finished = await http.post(f"/stream/{done.headers['x-stream-id']}/cancel")
    assert [unknown.status_code, bad.status_code, finished.status_code] == [404, 404, 404]
    assert unknown.json()["error"]["type"] == "not_found"
    assert bad_after.status_code == 400 and bad_after.json()["error"]["type"] == "invalid_request"
    assert extra.status_code == 422
    assert gone.status_code == 204


async def test_a_running_generation_charges_its_keys_tokens() -> None:
    gated = GatedProvider(tuple(f"t{i} " for i in range(40)))
    for gate in gated.gates[:35]:
        gate.set()
    toml = FAST_FAKE + f"[keys.web]\nsha256 = '{hash_key(KEY)}'\ntpm = 30\n"
    app = create_app(settings_from(toml), {"fake": gated})
    headers = {"X-API-Key": KEY}
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/stream", params=START, headers=headers) as response:
            lines = response.aiter_lines()
            async with asyncio.timeout(10):
                while f"id: {response.headers['x-stream-id']}:34" != await anext(lines):
                    pass
            # 35 deltas relayed and still running: 32 estimated tokens already charged.
            refused = await http.get("/stream", params=START, headers=headers)
            gated.open_all()
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limited"
