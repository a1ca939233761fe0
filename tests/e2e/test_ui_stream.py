"""The UI message stream on a real socket: split UTF-8 from real upstream dialects, keep-alive
comments during silence, and what a client leaving, a resume and a stop do (SPEC §4.6, §4.5)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.dialects.ui_messages import KEEP_ALIVE, UIMessageResponse, UIReaderResponse
from gateway.resume.chats import ChatStreams
from tests.conftest import CANARY_KEY, FAST_FAKE, REDIS_SLACK, settings_from, wire
from tests.e2e.conftest import GatedProvider, RequestsLogged, wait_for
from tests.e2e.servers import Reply, UpstreamStub, serve
from tests.e2e.test_providers import CAPTURES, gateway_settings, pieces

pytestmark = pytest.mark.e2e

USER = {"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
CHAT = {"id": "chat-1", "messages": [USER]}
ROUTES = {"/ui/chat": CHAT, "/ui/completion": {"prompt": "hi"}}


def chunks_of(body: str) -> list[dict[str, Any]]:
    return [
        json.loads(block.removeprefix("data: "))
        for block in body.split("\n\n")
        if block.startswith("data: {")
    ]


def deltas(body: str) -> list[str]:
    return [c["delta"] for c in chunks_of(body) if c["type"] == "text-delta"]


async def read_until(chunks: AsyncIterator[bytes], marker: bytes, received: bytes = b"") -> bytes:
    while marker not in received:
        received += await anext(chunks)
    return received


@pytest.mark.parametrize("kind", list(CAPTURES))
async def test_utf8_split_across_upstream_reads_arrives_whole(kind: str) -> None:
    # One byte per upstream write: every multi-byte character is cut across network reads.
    capture, content_type, expected = CAPTURES[kind]
    stub = UpstreamStub(Reply(content_type=content_type, body=pieces(wire(capture), 1)))
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings(kind, upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            chat = await http.post("/ui/chat", json={**CHAT, "model": "m"})
            completion = await http.post("/ui/completion", json={"prompt": "hi", "model": "m"})
    for answer in (chat, completion):
        assert answer.status_code == 200
        text = "".join(deltas(answer.text))
        assert text == expected
        assert "\ufffd" not in text
        assert answer.text.endswith('data: {"type":"finish"}\n\ndata: [DONE]\n\n')


@pytest.mark.parametrize("path", list(ROUTES))
async def test_keep_alive_comment_while_the_upstream_is_silent(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setattr(UIMessageResponse, "keep_alive_s", 0.03)
    monkeypatch.setattr(UIReaderResponse, "keep_alive_s", 0.03)
    provider = GatedProvider(("one ", "two"))
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with http.stream("POST", path, json=ROUTES[path]) as response:
            chunks = response.aiter_raw()
            received = await read_until(chunks, KEEP_ALIVE)  # the second gate is still shut
            provider.gates[1].set()
            async for chunk in chunks:
                received += chunk
    body = received.decode()
    before, _, after = body.partition(KEEP_ALIVE.decode())
    assert deltas(before) == ["one "] and deltas(after) == ["two"]
    assert body.endswith("data: [DONE]\n\n")


async def test_no_keep_alive_while_deltas_flow() -> None:
    # The default period (15 s) is far longer than this whole stream.
    async with (
        serve(create_app(settings_from(FAST_FAKE))) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        for path, body in ROUTES.items():
            response = await http.post(path, json=body)
            assert KEEP_ALIVE not in response.content


@pytest.mark.parametrize(
    ("path", "config"),
    [
        ("/ui/completion", ""),  # not resumable: the client leaving cancels at once
        ("/ui/chat", "[resume]\nenabled = false\n"),  # chat without resume: the same
        ("/ui/chat", "[resume]\norphan_timeout_s = 0\n"),  # resumable: the orphan time-out
    ],
)
async def test_the_upstream_is_cancelled_when_nobody_reads(path: str, config: str) -> None:
    provider = GatedProvider(("one ", "two"))
    app = create_app(settings_from(FAST_FAKE + config), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with http.stream("POST", path, json=ROUTES[path]) as response:
            await read_until(response.aiter_raw(), b"text-delta")
        await wait_for(provider.closed)
        assert provider.calls == 1
        assert (await http.get("/ui/chat/chat-1/stream")).status_code == 204


async def test_leaving_does_not_cancel_and_a_resume_gets_the_whole_message() -> None:
    provider = GatedProvider(("one ", "two ", "three"))
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with http.stream("POST", "/ui/chat", json=CHAT) as first:
            assert first.headers["x-stream-resumable"] == "true"
            assert first.headers["x-vercel-ai-ui-message-stream"] == "v1"
            seen = await read_until(first.aiter_raw(), b"text-delta")
        async with http.stream("GET", "/ui/chat/chat-1/stream") as resumed:
            assert resumed.status_code == 200
            assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
            assert resumed.headers["x-gateway-model"] == "story"
            chunks = resumed.aiter_raw()
            replayed = await read_until(chunks, b"text-delta")
            provider.open_all()  # the same generation goes on: nothing was cancelled
            body = replayed + b"".join([chunk async for chunk in chunks])
        after_end = await http.get("/ui/chat/chat-1/stream")
    start = chunks_of(seen.decode())[0]
    found = chunks_of(body.decode())
    assert found[0] == start  # the same messageId
    assert [c["type"] for c in found] == [
        "start",
        "start-step",
        "text-start",
        *["text-delta"] * 3,
        "text-end",
        "finish-step",
        "finish",
    ]
    assert deltas(body.decode()) == ["one ", "two ", "three"]
    assert body.endswith(b"data: [DONE]\n\n")
    assert after_end.status_code == 204
    assert provider.calls == 1  # one paid generation for both readers


async def test_stop_aborts_every_reader_and_cancels_the_upstream() -> None:
    provider = GatedProvider(("one ", "two"))
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with (
            http.stream("POST", "/ui/chat", json=CHAT) as first,
            http.stream("GET", "/ui/chat/chat-1/stream") as second,
        ):
            readers = [first.aiter_raw(), second.aiter_raw()]
            bodies = [await read_until(reader, b"text-delta") for reader in readers]
            stopped = await http.post("/ui/chat/chat-1/stop")
            bodies = [
                body + b"".join([c async for c in r])
                for body, r in zip(bodies, readers, strict=True)
            ]
        await wait_for(provider.closed)
        again = await http.post("/ui/chat/chat-1/stop")
        resume = await http.get("/ui/chat/chat-1/stream")
    assert stopped.status_code == 204
    for body in bodies:
        types = [c["type"] for c in chunks_of(body.decode())]
        assert types[-1] == "abort" and "finish" not in types and "error" not in types
        assert body.endswith(b'data: {"type":"abort"}\n\ndata: [DONE]\n\n')
    assert again.status_code == 404 and again.json()["error"]["type"] == "not_found"
    assert resume.status_code == 204
    assert not provider.gates[1].is_set()


async def test_a_new_message_supersedes_the_chats_running_answer() -> None:
    provider = GatedProvider(("one ", "two"))
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with http.stream("POST", "/ui/chat", json=CHAT) as first:
            await read_until(first.aiter_raw(), b"text-delta")
        assert not provider.closed.is_set()  # left alone, it would wait for its orphan time-out
        # The client moved on (a new message in the same chat): the old answer is cancelled,
        # though its second delta never came (so it cannot have ended by itself).
        async with http.stream("POST", "/ui/chat", json=CHAT) as second:
            chunks = second.aiter_raw()
            body = await read_until(chunks, b"text-delta")
            await wait_for(provider.closed)
            provider.gates[1].set()
            body += b"".join([chunk async for chunk in chunks])
    assert provider.calls == 2
    assert deltas(body.decode()) == ["one ", "two"]
    assert chunks_of(body.decode())[-1] == {"type": "finish"}


def _keys_config() -> str:
    lines = []
    for name in ("alice", "bob"):
        digest = hashlib.sha256(f"{CANARY_KEY}-{name}".encode()).hexdigest()
        lines.append(f"[keys.{name}]\nsha256 = '{digest}'\n")
    return FAST_FAKE + "".join(lines)


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {CANARY_KEY}-{name}"}


async def test_only_the_key_that_started_a_chat_can_resume_or_stop_it() -> None:
    provider = GatedProvider(("one ", "two"))
    app = create_app(settings_from(_keys_config()), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with http.stream("POST", "/ui/chat", json=CHAT, headers=_as("alice")) as first:
            await read_until(first.aiter_raw(), b"text-delta")
            assert (await http.get("/ui/chat/chat-1/stream")).status_code == 401
            bob_resume = await http.get("/ui/chat/chat-1/stream", headers=_as("bob"))
            bob_stop = await http.post("/ui/chat/chat-1/stop", headers=_as("bob"))
            alice_stop = await http.post("/ui/chat/chat-1/stop", headers=_as("alice"))
    assert bob_resume.status_code == 204 and bob_resume.content == b""
    assert bob_stop.status_code == 404
    assert alice_stop.status_code == 204


async def test_resume_on_another_replica_through_redis(redis_url: str) -> None:
    provider = GatedProvider(("one ", "two"))
    settings = settings_from(f"redis_url = '{redis_url}'\n{REDIS_SLACK}" + FAST_FAKE)
    first_app = create_app(settings, {"fake": provider})
    second_app = create_app(settings)
    async with (
        serve(first_app) as first_url,
        serve(second_app) as second_url,
        httpx.AsyncClient() as http,
    ):
        provider.gates[0].set()
        async with http.stream("POST", f"{first_url}/ui/chat", json=CHAT) as first:
            seen = await read_until(first.aiter_raw(), b"text-delta")
        async with http.stream("GET", f"{second_url}/ui/chat/chat-1/stream") as resumed:
            assert resumed.status_code == 200
            chunks = resumed.aiter_raw()
            replayed = await read_until(chunks, b"text-delta")
            provider.open_all()
            body = replayed + b"".join([chunk async for chunk in chunks])
        ended = await http.get(f"{second_url}/ui/chat/chat-1/stream")
    assert chunks_of(body.decode())[0] == chunks_of(seen.decode())[0]
    assert deltas(body.decode()) == ["one ", "two"]
    assert body.endswith(b'data: {"type":"finish"}\n\ndata: [DONE]\n\n')
    assert ended.status_code == 204


async def test_a_client_leaving_while_its_chat_registers_releases_everything() -> None:
    """The slot, the upstream and the metrics come back when the client leaves between the
    commit point and the generation's start (a Redis round trip)."""
    entered = asyncio.Event()

    class StuckChats(ChatStreams):
        async def remember(self, owner: str, chat_id: str, stream_id: str) -> None:
            entered.set()
            await asyncio.Event().wait()  # Redis never answers

    digest = hashlib.sha256(CANARY_KEY.encode()).hexdigest()
    toml = FAST_FAKE + f"[keys.app]\nsha256 = '{digest}'\nmax_concurrent_streams = 1\n"
    provider = GatedProvider(("one ",))
    provider.gates[0].set()
    app = create_app(settings_from(toml), {"fake": provider})
    key = {"Authorization": f"Bearer {CANARY_KEY}"}
    with RequestsLogged() as logged:
        async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=key) as http:
            app.state.ui_chats = StuckChats(None, 0.25, lambda: None)
            leaving = asyncio.ensure_future(http.post("/ui/chat", json=CHAT))
            await wait_for(entered)
            leaving.cancel()  # the client goes away
            await wait_for(provider.closed)
            await logged.reach(1)  # that request has fully ended
            app.state.ui_chats = ChatStreams(None, 0.25, lambda: None)
            again = await http.post("/ui/chat", json=CHAT)
            gauge = await http.get("/metrics")
    assert again.status_code == 200  # the key's one stream slot was given back
    assert "gateway_active_streams 0.0" in gauge.text


@pytest.mark.parametrize("path", list(ROUTES))
async def test_shutdown_ends_the_stream_with_an_error_never_a_finish(path: str) -> None:
    provider = GatedProvider(("one ", "two"))
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        provider.gates[0].set()
        async with http.stream("POST", path, json=ROUTES[path]) as response:
            chunks = response.aiter_raw()
            body = await read_until(chunks, b"text-delta")
            app.state.drain.begin(0)  # the grace period is over at once
            body += b"".join([chunk async for chunk in chunks])
    found = chunks_of(body.decode())
    assert [c["type"] for c in found][-2:] == ["text-delta", "error"]
    assert found[-1]["errorText"].startswith("unavailable: ")
    assert body.endswith(b"data: [DONE]\n\n")
