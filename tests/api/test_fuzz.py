"""Fuzzing what parses input: every malformed, nested, non-UTF-8, oversized or out-of-range
request gets a 4xx in the error envelope, never a 5xx; decoders never raise on any bytes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
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
    if path == "/v1/messages":
        check_anthropic(response)
        return
    assert response.status_code < 500 or _upstream_error(response), response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str)
        if path.startswith("/v1/"):
            assert error["code"] == error["type"]


def _upstream_error(response: httpx.Response) -> bool:
    # A body that validly asks for the scripted-failure model gets that upstream's 502.
    return response.json()["error"]["type"].startswith("upstream_")


def check_anthropic(response: httpx.Response) -> None:
    """4xx in Anthropic's envelope; a 5xx only as the scripted upstream failure's api_error."""
    if response.status_code < 400:
        return
    body = response.json()
    assert body["type"] == "error" and set(body) == {"type", "error", "request_id"}
    assert isinstance(body["error"]["type"], str) and isinstance(body["error"]["message"], str)
    if response.status_code >= 500:
        assert response.status_code == 500, response.text
        assert body["error"] == {"type": "api_error", "message": "scripted failure: HTTP 500"}


@FUZZ
@given(body=bodies, path=st.sampled_from(["/stream", "/v1/chat/completions", "/v1/messages"]))
async def test_fuzzed_bodies_get_4xx_not_5xx(
    client: httpx.AsyncClient, body: bytes, path: str
) -> None:
    check(await client.post(path, content=body), path)


blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "document", "tool_result", "thinking", ""])},
    optional={"text": st.text(max_size=10) | json_values, "source": json_values, "x": json_values},
)
contents = st.text(max_size=10) | st.lists(blocks, max_size=3) | json_values
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool"])},
        optional={"content": contents, "x": json_values},
    ),
    max_size=3,
)
# Hostile values for one field at a time, over an otherwise valid body, so that the fuzz
# reaches block checks, the builder, model resolution and the relay, not only the schema.
ANTHROPIC_FIELDS = {
    "model": st.sampled_from(["story", "broken", "nope", "fake/x", ""]) | json_values,
    "max_tokens": st.integers(-5, 20) | json_values,
    "messages": messages | json_values,
    "system": contents,
    "stream": st.booleans() | json_values,
    "temperature": st.floats(-1, 3) | json_values,
    "top_k": st.integers() | json_values,
    "stop_sequences": st.lists(st.text(max_size=5), max_size=3) | json_values,
    "metadata": st.dictionaries(st.sampled_from(["user_id", "x"]), json_values),
    "tools": json_values,
    "tool_choice": json_values,
    "thinking": json_values,
    "output_config": json_values,
    "cache_control": json_values,
    "bogus": json_values,
}
VALID_MESSAGES = {
    "model": "story",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "hi"}],
}
anthropic_bodies = st.lists(
    st.one_of(*(st.tuples(st.just(name), values) for name, values in ANTHROPIC_FIELDS.items())),
    max_size=2,
).map(lambda overrides: {**VALID_MESSAGES, **dict(overrides)})


@FUZZ
@given(
    body=anthropic_bodies,
    headers=st.dictionaries(
        st.sampled_from(["anthropic-version", "anthropic-beta", "x-api-key"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40),
    ),
)
async def test_fuzzed_anthropic_bodies_get_4xx_in_anthropics_envelope(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]
) -> None:
    try:
        response = await client.post("/v1/messages", content=json.dumps(body), headers=headers)
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        return  # not a header value a client can send
    check_anthropic(response)


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
async def test_any_field_value_gets_a_proper_answer(
    client: httpx.AsyncClient, value: Any, field: str
) -> None:
    body = {"prompt": "hi", field: value}
    response = await client.post("/stream", content=json.dumps(body).encode())
    assert response.status_code in (200, 404, 422, 502), response.text


def _floats(**bounds: float) -> st.SearchStrategy[float]:
    return st.floats(allow_nan=False, allow_infinity=False, **bounds)


not_numbers = st.one_of(
    st.text(max_size=10).map(lambda text: "x" + text),  # never parses as a number
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
not_strings = st.one_of(st.integers(), _floats(), st.lists(st.integers(), max_size=3))
OUT_OF_RANGE = {
    "max_tokens": st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=10_000_001),
        _floats(min_value=0.5, max_value=1e6).filter(lambda x: not x.is_integer()),
        not_numbers,
    ),
    "temperature": st.one_of(
        _floats(max_value=-1e-6), _floats(min_value=2.000001, max_value=1e300), not_numbers
    ),
    "top_p": st.one_of(
        _floats(max_value=-1e-6), _floats(min_value=1.000001, max_value=1e300), not_numbers
    ),
    "stop": st.one_of(
        st.just(""),
        st.just([]),
        st.text(min_size=257, max_size=300),
        st.lists(st.just("x"), min_size=17, max_size=20),
        not_strings,
        st.lists(not_strings, min_size=1, max_size=3),
    ),
    "model": st.one_of(
        st.text(max_size=20).filter(lambda text: re.fullmatch(r"[!-~]{1,256}", text) is None),
        not_strings,
    ),
    "system": not_strings,
}


@FUZZ
@given(data=st.data(), field=st.sampled_from(sorted(OUT_OF_RANGE)))
async def test_out_of_range_fields_are_422(
    client: httpx.AsyncClient, data: st.DataObject, field: str
) -> None:
    value = data.draw(OUT_OF_RANGE[field], label=field)
    body = {"prompt": "hi", field: value}
    response = await client.post("/stream", content=json.dumps(body).encode())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_request"


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
@example(name="\n")  # once answered 200 with the default model's entry, as id ""
@example(name="story\n")
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
