"""POST /v1/audio/speech (SPEC §4.3) on real sockets: the upstream's bytes unchanged, with its
media type, each read written as it arrives. The proof of "as it arrives" is an upstream that
sends the rest only once the client has read the first bytes: a gateway that buffered would
never deliver them, and the test would fail at its guard instead of passing."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import openai
import pytest

from gateway.app import create_app
from tests.conftest import CANARY_KEY, settings_from
from tests.e2e.conftest import GUARD_S
from tests.e2e.servers import Break, Gate, Reply, UpstreamStub, serve

pytestmark = pytest.mark.e2e

FIRST = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x00" + bytes(range(256))  # not UTF-8
REST = os.urandom(4096)
BODY = {"model": "tts", "input": "Hello there", "voice": "alloy", "response_format": "mp3"}


def config(upstream: str, kind: str = "openai") -> str:
    base = f"{upstream}/v1" if kind == "openai" else upstream
    return (
        f"[providers.up]\ntype = '{kind}'\nbase_url = '{base}'\napi_key = '{CANARY_KEY}'\n"
        "[models.tts]\nprovider = 'up'\nmodel = 'gpt-4o-mini-tts'\n"
    )


async def test_the_client_gets_the_first_bytes_before_the_upstream_sends_the_rest() -> None:
    gate = Gate()
    stub = UpstreamStub(Reply(content_type="audio/mpeg", body=[FIRST, gate, REST]))
    async with serve(stub) as upstream:
        async with serve(create_app(settings_from(config(upstream)))) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                async with http.stream("POST", "/v1/audio/speech", json=BODY) as response:
                    received = b""
                    chunks = response.aiter_raw()
                    async with asyncio.timeout(GUARD_S):
                        while len(received) < len(FIRST):
                            received += await anext(chunks)
                    assert received == FIRST and stub.sent == len(FIRST)
                    gate.open()  # only now does the upstream send the rest
                    async for chunk in chunks:
                        received += chunk
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert received == FIRST + REST
    sent = json.loads(stub.seen[0].body)
    assert sent == {**BODY, "model": "gpt-4o-mini-tts"}
    assert stub.seen[0].path == "/v1/audio/speech"
    assert stub.seen[0].headers["authorization"] == f"Bearer {CANARY_KEY}"


@pytest.mark.parametrize("media_type", ["audio/wav", "audio/pcm", "text/event-stream"])
async def test_the_upstreams_media_type_is_kept(media_type: str) -> None:
    stub = UpstreamStub(Reply(content_type=media_type, body=[FIRST, REST]))
    async with serve(stub) as upstream:
        async with serve(create_app(settings_from(config(upstream)))) as url:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            async with client:
                audio = await client.audio.speech.create(
                    model="tts", input="Hello there", voice="alloy"
                )
    assert audio.response.headers["content-type"] == media_type
    assert audio.content == FIRST + REST


async def test_a_failure_after_the_first_bytes_cuts_the_body_short() -> None:
    stub = UpstreamStub(Reply(content_type="audio/mpeg", body=[FIRST, Break()]))
    async with serve(stub) as upstream:
        async with serve(create_app(settings_from(config(upstream)))) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                received = b""
                with pytest.raises(httpx.RemoteProtocolError):
                    async with http.stream("POST", "/v1/audio/speech", json=BODY) as response:
                        async for chunk in response.aiter_raw():
                            received += chunk
    assert received == FIRST


async def test_an_upstream_error_before_any_byte_is_openais_envelope() -> None:
    body = b'{"error":{"message":"voice unknown","type":"invalid_request_error"}}'
    stub = UpstreamStub(Reply(status=400, content_type="application/json", body=[body]))
    async with serve(stub) as upstream:
        async with serve(create_app(settings_from(config(upstream)))) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                response = await http.post("/v1/audio/speech", json=BODY)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "upstream_rejected"
    assert "voice unknown" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (BODY, 404, "model_unavailable"),  # an anthropic provider has no speech
        ({**BODY, "model": "nope"}, 404, "unknown_model"),
        ({"model": "tts"}, 422, "invalid_request"),
        ({**BODY, "input": 5}, 422, "invalid_request"),
    ],
)
async def test_what_cannot_be_spoken_is_a_4xx(body: object, status: int, kind: str) -> None:
    stub = UpstreamStub(Reply(content_type="audio/mpeg", body=[FIRST]))
    async with serve(stub) as upstream:
        async with serve(create_app(settings_from(config(upstream, "anthropic")))) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                response = await http.post("/v1/audio/speech", json=body)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind
    assert not stub.seen
