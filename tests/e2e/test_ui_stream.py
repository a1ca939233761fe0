"""The UI message stream on a real socket: split UTF-8 from real upstream dialects, the
keep-alive comment during silence, and a client that leaves (SPEC §4.6, §6)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.ui_messages import KEEP_ALIVE, UIMessageResponse
from tests.conftest import FAST_FAKE, settings_from, wire
from tests.e2e.conftest import GatedProvider, wait_for
from tests.e2e.servers import Reply, UpstreamStub, serve
from tests.e2e.test_providers import CAPTURES, gateway_settings, pieces

pytestmark = pytest.mark.e2e

CHAT = {
    "id": "chat-1",
    "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
}


def deltas(body: str) -> list[str]:
    found = []
    for block in body.split("\n\n"):
        if block.startswith("data: {"):
            chunk: dict[str, Any] = json.loads(block.removeprefix("data: "))
            if chunk["type"] == "text-delta":
                found.append(chunk["delta"])
    return found


@pytest.mark.parametrize("kind", list(CAPTURES))
async def test_utf8_split_across_upstream_reads_arrives_whole(kind: str) -> None:
    # One byte per upstream write: every multi-byte character is cut across network reads.
    capture, content_type, expected = CAPTURES[kind]
    stub = UpstreamStub(Reply(content_type=content_type, body=pieces(wire(capture), 1)))
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings(kind, upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/ui/chat", json={**CHAT, "model": "m"})
            completion = await http.post("/ui/completion", json={"prompt": "hi", "model": "m"})
    for answer in (response, completion):
        assert answer.status_code == 200
        text = "".join(deltas(answer.text))
        assert text == expected
        assert "\ufffd" not in text
        assert answer.text.endswith('data: {"type":"finish"}\n\ndata: [DONE]\n\n')


async def test_keep_alive_comment_while_the_upstream_is_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(UIMessageResponse, "keep_alive_s", 0.03)
    provider = GatedProvider(("one ", "two"))
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    received = b""
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with http.stream("POST", "/ui/chat", json=CHAT) as response:
            chunks = response.aiter_raw()
            while KEEP_ALIVE not in received:  # the second gate is shut: the stream is silent
                received += await anext(chunks)
            provider.gates[1].set()
            async for chunk in chunks:
                received += chunk
    body = received.decode()
    assert deltas(body) == ["one ", "two"]
    before, _, after = body.partition(KEEP_ALIVE.decode())
    assert deltas(before) == ["one "] and deltas(after) == ["two"]
    assert body.endswith("data: [DONE]\n\n")


async def test_no_keep_alive_while_deltas_flow() -> None:
    # The default period (15 s) is far longer than this whole stream.
    settings = settings_from(FAST_FAKE)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/ui/chat", json=CHAT)
    assert KEEP_ALIVE not in response.content


async def test_client_leaving_cancels_the_upstream() -> None:
    provider = GatedProvider(("one ", "two"))
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with http.stream("POST", "/ui/chat", json=CHAT) as response:
            async for chunk in response.aiter_raw():
                if b"text-delta" in chunk:
                    break
        await wait_for(provider.closed)
    assert not provider.gates[1].is_set()
