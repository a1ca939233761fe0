"""Fuzzing what parses input: every malformed, nested, non-UTF-8, oversized or out-of-range
request gets a 4xx in the error envelope, never a 5xx; decoders never raise on any bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.providers._ndjson import NDJSONDecoder
from gateway.providers._sse import SSEDecoder
from tests.conftest import FAST_FAKE, app_client, settings_from

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "model",
    "prompt",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "n",
    "tools",
    "role",
    "content",
]
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).map(
        lambda d: json.dumps(d).encode()
    ),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 3000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.binary(min_size=1, max_size=50).map(lambda raw: b'{"prompt": "' + raw + b'"}'),
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    toml = FAST_FAKE + "[models.broken]\nprovider = 'fake'\nparams = { fail_status = 500 }\n"
    async with app_client(settings_from(toml, max_body_bytes=4096)) as (http, _):
        yield http


def check(response: httpx.Response, path: str) -> None:
    assert response.status_code < 500 or _upstream_error(response), response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str)
        if path.startswith("/v1/"):
            assert error["code"] == error["type"]


def _upstream_error(response: httpx.Response) -> bool:
    # A body that validly asks for the scripted-failure model gets that upstream's 502.
    return response.json()["error"]["type"].startswith("upstream_")


@FUZZ
@given(body=bodies, path=st.sampled_from(["/stream", "/v1/chat/completions"]))
async def test_fuzzed_bodies_get_4xx_not_5xx(
    client: httpx.AsyncClient, body: bytes, path: str
) -> None:
    check(await client.post(path, content=body), path)


@FUZZ
@given(
    params=st.lists(
        st.tuples(st.sampled_from([*FIELDS, "format", "x"]), st.text(max_size=20)), max_size=6
    )
)
async def test_fuzzed_query_strings_get_4xx_not_5xx(
    client: httpx.AsyncClient, params: list[tuple[str, str]]
) -> None:
    check(await client.get("/stream", params=params), "/stream")


@FUZZ
@given(
    value=st.one_of(
        st.integers(),
        st.floats(),
        st.text(max_size=30),
        st.none(),
        st.lists(st.integers(), max_size=3),
    ),
    field=st.sampled_from(["max_tokens", "temperature", "top_p", "stop", "model", "system"]),
)
async def test_out_of_range_fields_are_422(
    client: httpx.AsyncClient, value: Any, field: str
) -> None:
    body = {"prompt": "hi", field: value}
    response = await client.post("/stream", content=json.dumps(body).encode())
    assert response.status_code in (200, 404, 422, 502), response.text


@FUZZ
@given(header=st.text(max_size=200))
async def test_fuzzed_last_event_id_is_204_or_400(client: httpx.AsyncClient, header: str) -> None:
    try:
        response = await client.get("/stream?prompt=x", headers={"Last-Event-ID": header})
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        return  # not a header value a client can send
    assert response.status_code in (204, 400)


@FUZZ
@given(
    # Names whose URL a client would normalise into another path ("a/../b", "x//y") are not
    # names it can ask about.
    name=st.text(min_size=1, max_size=300).filter(
        lambda n: all(part not in ("", ".", "..") for part in n.split("/"))
    )
)
async def test_fuzzed_model_ids_are_200_or_404(client: httpx.AsyncClient, name: str) -> None:
    from urllib.parse import quote

    response = await client.get("/v1/models/" + quote(name, safe="/"))
    check(response, "/v1/models")
    assert response.status_code in (200, 404), response.text
    if response.status_code == 200:
        assert response.json()["id"] == name


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=20))
def test_decoders_never_raise_on_any_bytes(chunks: list[bytes]) -> None:
    sse, ndjson = SSEDecoder(), NDJSONDecoder()
    for chunk in chunks:
        for event in sse.feed(chunk):
            assert isinstance(event.data, bytes)
        ndjson.feed(chunk)
    ndjson.close()
