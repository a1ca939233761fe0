"""A real browser (headless Chromium via Playwright) reading the gateway.

Needs Debian's `chromium` (or CHROMIUM=/path/to/chrome); `make test` installs it when it can.
Without it the tests skip locally, saying so, and fail in CI (tests/ci.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.errors import UpstreamUnavailable
from gateway.providers.base import ChatRequest, StreamOutcome
from gateway.providers.fake import FakeConfig, load_story
from tests.conftest import FAST_FAKE, settings_from
from tests.e2e.conftest import CountingFake, wait_for
from tests.e2e.servers import Reply, UpstreamStub, serve

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

STORY = load_story(None)


@pytest_asyncio.fixture(loop_scope="module")
async def page(chromium: Browser) -> AsyncIterator[Page]:
    context = await chromium.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()


EVENT_SOURCE = """
() => new Promise((resolve) => {
  const source = new EventSource("/stream?prompt=hi");
  let text = "", done = null, opens = 0, errors = 0;
  source.onopen = () => { opens += 1; };
  source.onmessage = (event) => { text += JSON.parse(event.data); };
  source.addEventListener("done", (event) => { done = JSON.parse(event.data); });
  source.onerror = () => {
    errors += 1;
    // After `done` the browser reconnects by itself with Last-Event-ID; the gateway's 204
    // makes it give up for good (readyState CLOSED).
    if (source.readyState === EventSource.CLOSED) resolve({ text, done, opens, errors });
  };
})
"""

FETCH_READER = """
async (body) => {
  const response = await fetch("/stream", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "", reads = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      reads += 1;
      text += decoder.decode(value, { stream: true });
      if (window.onRead) await window.onRead(text);
    }
  } catch (error) {
    return { text, reads, failed: String(error) };
  }
  return { text, reads, failed: null, model: response.headers.get("X-Gateway-Model") };
}
"""


async def test_browser_event_source_gets_the_text_done_and_no_second_generation(
    page: Page,
) -> None:
    fake = CountingFake(FakeConfig(chunk_delay_ms=0))
    settings = settings_from("[providers.fake]\ntype='fake'\nchunk_delay_ms=0\n")
    async with serve(create_app(settings, {"fake": fake})) as url:
        await page.goto(f"{url}/healthz")
        result: dict[str, Any] = await page.evaluate(EVENT_SOURCE)
    assert result["text"] == STORY
    assert result["done"]["finish_reason"] == "stop"
    assert result["opens"] == 1  # the reconnection never opened a second stream
    assert fake.calls == 1


class BreaksWhenTold:
    """A test adapter: sends its chunks, then breaks the stream once the test says so."""

    def __init__(self, chunks: tuple[str, ...]) -> None:
        self.chunks = chunks
        self.go = asyncio.Event()

    async def stream(
        self, request: ChatRequest, outcome: StreamOutcome
    ) -> AsyncIterator[list[str]]:
        for chunk in self.chunks:
            yield [chunk]
        await self.go.wait()
        raise UpstreamUnavailable("the upstream broke")

    async def aclose(self) -> None:
        return None


async def test_browser_fetch_reader_streams_the_text(page: Page) -> None:
    async with serve(create_app(settings_from(FAST_FAKE))) as url:
        await page.goto(f"{url}/healthz")
        whole = await page.evaluate(FETCH_READER, {"prompt": "hi"})
    assert whole["text"] == STORY
    assert whole["failed"] is None
    assert whole["model"] == "story"


async def test_browser_fetch_reader_sees_the_text_then_the_truncation(page: Page) -> None:
    provider = BreaksWhenTold(("Rick: ", "come on, ", "Morty"))
    expected = "".join(provider.chunks)
    arrived = asyncio.Event()

    def on_read(text: str) -> None:
        if text == expected:
            arrived.set()

    await page.expose_function("onRead", on_read)
    async with serve(create_app(settings_from(FAST_FAKE), {"fake": provider})) as url:
        await page.goto(f"{url}/healthz")
        reading = asyncio.ensure_future(page.evaluate(FETCH_READER, {"prompt": "hi"}))
        await wait_for(arrived)  # the page has read every chunk sent before the break...
        provider.go.set()
        broken = await reading
    assert broken["text"] == expected
    assert broken["failed"] is not None  # ...and then the browser rejects the truncated body


# What the official SDKs send from a browser, as they send it (openai-node 5, the Anthropic
# TypeScript SDK with dangerouslyAllowBrowser): every one of these triggers a preflight.
OPENAI_NODE_HEADERS = {
    "Authorization": "Bearer KEY",
    "Content-Type": "application/json",
    "X-Stainless-Lang": "js",
    "X-Stainless-Package-Version": "5.23.0",
    "X-Stainless-OS": "Linux",
    "X-Stainless-Arch": "x64",
    "X-Stainless-Runtime": "browser:chrome",
    "X-Stainless-Runtime-Version": "140.0.0",
    "X-Stainless-Retry-Count": "0",
    "X-Stainless-Timeout": "600",
}
ANTHROPIC_SDK_HEADERS = {
    "x-api-key": "KEY",
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-stainless-lang": "js",
}

CROSS_ORIGIN_FETCH = """
async ([url, headers, body]) => {
  try {
    const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    return { status: response.status, text: await response.text() };
  } catch (error) {
    return { status: null, text: String(error) };
  }
}
"""


async def test_browser_sdks_headers_pass_the_preflight_from_an_allowed_origin(page: Page) -> None:
    from gateway.auth import hash_key

    key = "gw-browser-key-0123456789"
    # A second origin serving the page, as a frontend's dev server does.
    async with serve(UpstreamStub(Reply(content_type="text/html", body=[b"<p>app</p>"]))) as site:
        settings = settings_from(
            "[providers.fake]\ntype='fake'\nchunk_delay_ms=0\n"
            f"[keys.web]\nsha256='{hash_key(key)}'\n[cors]\nallow_origins=['{site}']\n"
        )
        async with serve(create_app(settings)) as url:
            await page.goto(f"{site}/")
            chat = {"model": "story", "messages": [{"role": "user", "content": "hi"}]}
            openai_headers = {k: v.replace("KEY", key) for k, v in OPENAI_NODE_HEADERS.items()}
            openai = await page.evaluate(
                CROSS_ORIGIN_FETCH, [f"{url}/v1/chat/completions", openai_headers, chat]
            )
            anthropic_headers = {k: v.replace("KEY", key) for k, v in ANTHROPIC_SDK_HEADERS.items()}
            anthropic = await page.evaluate(
                CROSS_ORIGIN_FETCH, [f"{url}/stream", anthropic_headers, {"prompt": "hi"}]
            )
            stranger = await page.evaluate(
                CROSS_ORIGIN_FETCH,
                [f"{url}/stream", {**anthropic_headers, "x-unlisted": "1"}, {"prompt": "hi"}],
            )
    assert openai["status"] == 200, openai
    assert json.loads(openai["text"])["choices"][0]["message"]["content"] == STORY
    assert anthropic["status"] == 200, anthropic
    assert anthropic["text"] == STORY
    assert stranger["status"] is None  # a header outside the families is still refused


class FreshStreamRequests:
    """The app, counting the /stream requests that reach it without Last-Event-ID."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        fresh = not any(name == b"last-event-id" for name, _ in scope.get("headers", ()))
        if scope["type"] == "http" and scope["path"] == "/stream" and fresh:
            self.count += 1
        await self.app(scope, receive, send)


class CuttingProxy:
    """A TCP proxy in front of the gateway that cuts the first resumable stream right after its
    event 2, as a dropped network would: the browser must reconnect and resume by itself."""

    CUT = re.compile(rb"id: [A-Za-z0-9_-]+:2\n\n")

    def __init__(self, port: int) -> None:
        self.port = port
        self.cut = False

    async def handle(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream, to_upstream = await asyncio.open_connection("127.0.0.1", self.port)
        pumps = [
            asyncio.ensure_future(self._pump(client, to_upstream, cut=False)),
            asyncio.ensure_future(self._pump(upstream, to_client, cut=True)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for writer in (to_client, to_upstream):
            writer.transport.abort()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, cut: bool
    ) -> None:
        seen = b""
        while data := await source.read(65536):
            if cut and not self.cut:
                seen += data
                if match := self.CUT.search(seen):
                    self.cut = True
                    sink.write(data[: len(data) - (len(seen) - match.end())])
                    await sink.drain()
                    return  # the connection drops here
            sink.write(data)
            await sink.drain()


RESUMING_EVENT_SOURCE = """
(url) => new Promise((resolve) => {
  const source = new EventSource(url);
  let text = "", done = null, opens = 0, ids = [];
  source.onopen = () => { opens += 1; };
  source.onmessage = (event) => { text += JSON.parse(event.data); ids.push(event.lastEventId); };
  source.addEventListener("done", (event) => { done = JSON.parse(event.data); });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) resolve({ text, done, opens, ids });
  };
})
"""


async def test_browser_event_source_resumes_a_dropped_stream_with_a_token(page: Page) -> None:
    fake = CountingFake(FakeConfig(chunk_delay_ms=2))
    key = "gw-browser-key-0001"
    settings = settings_from(
        "[providers.fake]\ntype='fake'\nchunk_delay_ms=2\n[resume]\nresume_retry_ms=50\n"
        f"[keys.web]\nsha256='{hash_key(key)}'\n"
    )
    fresh = FreshStreamRequests(create_app(settings, {"fake": fake}))
    async with serve(fresh) as url:
        proxy = CuttingProxy(int(url.rsplit(":", 1)[1]))
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        proxied = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with httpx.AsyncClient() as http:
                issued = await http.post(f"{url}/stream/tokens", headers={"X-API-Key": key})
            token = issued.json()["token"]
            query = urlencode({"prompt": "hi", "resumable": "true", "token": token})
            await page.goto(f"{proxied}/healthz")
            result: dict[str, Any] = await page.evaluate(RESUMING_EVENT_SOURCE, f"/stream?{query}")
        finally:
            server.close()
            await server.wait_closed()
    assert proxy.cut  # the first connection really was dropped mid-stream
    assert result["opens"] == 2  # the browser came back once, by itself, and resumed
    assert result["text"] == STORY
    assert [int(i.rsplit(":", 1)[1]) for i in result["ids"]] == list(range(len(result["ids"])))
    assert result["done"]["finish_reason"] == "stop"
    # One generation per request that asked for a new stream, none for the reconnections.
    # (Chromium re-sends a request whose reused keep-alive connection died before the
    # response began; such a re-sent request is a new stream for any server.)
    assert fresh.count >= 1
    assert fake.calls == fresh.count
