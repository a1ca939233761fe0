"""Hostile input to the resumable-stream routes (SPEC §4.5): Last-Event-ID, stream ids,
`after`, tokens (long, non-ASCII, wrong shape, another stream's or another key's) get a 4xx
or a 204 in the error envelope, never a 5xx, and never another owner's events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.auth import hash_key
from tests.conftest import FAST_FAKE, app_client, settings_from

FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
KEY, OTHER = "gw-fuzz-key-000001", "gw-fuzz-key-000002"
TOML = (
    FAST_FAKE
    + f"[keys.alice]\nsha256 = '{hash_key(KEY)}'\n[keys.bob]\nsha256 = '{hash_key(OTHER)}'\n"
)


class Fixture:
    http: httpx.AsyncClient
    stream_id: str  # alice's finished resumable stream
    alice_token: str
    bob_token: str


@pytest.fixture
async def live() -> AsyncIterator[Fixture]:
    async with app_client(settings_from(TOML)) as (http, _):
        found = Fixture()
        found.http = http
        started = await http.get(
            "/stream",
            params={"prompt": "x", "format": "sse", "resumable": "true"},
            headers={"X-API-Key": KEY},
        )
        assert started.headers["x-stream-resumable"] == "true"
        found.stream_id = started.headers["x-stream-id"]
        for name, key in (("alice_token", KEY), ("bob_token", OTHER)):
            issued = await http.post("/stream/tokens", headers={"X-API-Key": key})
            setattr(found, name, issued.json()["token"])
        yield found


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str)
    if response.status_code in (401, 404):
        assert "data:" not in response.text


hostile = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="abcXYZ019_-:{}%/. é\u2028", max_size=140),
    st.integers(-(10**12), 10**12).map(str),
    st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")),
)


async def send(http: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> None:
    try:
        response = await http.request(method, url, **kwargs)  # type: ignore[arg-type]
    except (UnicodeEncodeError, httpx.LocalProtocolError, httpx.InvalidURL):
        return  # not something a client can send
    check(response)


@FUZZ
@given(suffix=hostile, use_real=st.booleans())
async def test_hostile_last_event_ids(live: Fixture, suffix: str, use_real: bool) -> None:
    value = f"{live.stream_id}:{suffix}" if use_real else suffix
    for key in (KEY, OTHER):
        headers = {"Last-Event-ID": value, "X-API-Key": key}
        await send(live.http, "GET", "/stream", headers=headers)
        await send(live.http, "POST", "/stream", headers=headers)


@FUZZ
@given(stream=hostile, after=hostile)
async def test_hostile_stream_ids_and_after(live: Fixture, stream: str, after: str) -> None:
    for key in (KEY, OTHER):
        headers = {"X-API-Key": key}
        await send(live.http, "GET", f"/stream/{stream}", params={"after": after}, headers=headers)
        await send(
            live.http, "GET", f"/stream/{live.stream_id}", params={"after": after}, headers=headers
        )
        await send(live.http, "POST", f"/stream/{stream}/cancel", headers=headers)


@FUZZ
@given(token=hostile, which=st.sampled_from(["garbage", "mangled", "bob"]))
async def test_hostile_tokens(live: Fixture, token: str, which: str) -> None:
    if which == "mangled":
        token = live.alice_token[: len(token) % (len(live.alice_token) + 1)] + token
    elif which == "bob":
        token = live.bob_token
    resume = {"Last-Event-ID": f"{live.stream_id}:0"}
    for url in ("/stream", f"/stream/{live.stream_id}"):
        params = (
            {"token": token, "prompt": "x", "format": "sse"}
            if url == "/stream"
            else {"token": token}
        )
        await send(live.http, "GET", url, params=params, headers=resume)
    if which == "bob":  # a valid token for another key: that key's view, so 404
        response = await live.http.get("/stream", params={"token": token}, headers=resume)
        assert response.status_code == 404


async def test_a_token_is_accepted_nowhere_else(live: Fixture) -> None:
    token = live.alice_token
    refused = [
        await live.http.post("/stream", params={"token": token}, json={"prompt": "x"}),
        await live.http.get("/v1/models", params={"token": token}),
        await live.http.post(f"/stream/{live.stream_id}/cancel", params={"token": token}),
        await live.http.post("/stream/tokens", params={"token": token}),
    ]
    assert [r.status_code for r in refused] == [401] * 4
    resumed = await live.http.get(f"/stream/{live.stream_id}", params={"token": token})
    assert resumed.status_code == 200
    assert "event: done" in resumed.text
