"""A real browser (headless Chromium via Playwright) reading the gateway.

Needs Debian's `chromium` (or CHROMIUM=/path/to/chrome) and the `playwright` package; `.ci/run`
installs the browser when it is missing. Without them the test is skipped, saying so.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.providers.fake import FakeConfig, load_story
from tests.conftest import settings_from
from tests.e2e.conftest import CountingFake
from tests.e2e.servers import serve

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

STORY = load_story(None)
CHROMIUM = (
    os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.async_api import Page, async_playwright
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]

if CHROMIUM is None or async_playwright is None:  # pragma: no cover - depends on the machine
    pytest.skip(
        "browser tests need Chromium and Playwright: `apt-get install chromium` "
        "(or set CHROMIUM=/path/to/chrome) and `pip install playwright`",
        allow_module_level=True,
    )


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


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


async def test_browser_fetch_reader_streams_and_sees_truncation(page: Page) -> None:
    settings = settings_from(
        "[providers.fake]\ntype='fake'\nchunk_delay_ms=0\n"
        "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=5}\n"
    )
    async with serve(create_app(settings)) as url:
        await page.goto(f"{url}/healthz")
        whole = await page.evaluate(FETCH_READER, {"prompt": "hi"})
        broken = await page.evaluate(FETCH_READER, {"prompt": "hi", "model": "flaky"})
    assert whole["text"] == STORY
    assert whole["failed"] is None
    assert whole["model"] == "story"
    assert broken["failed"] is not None  # the browser rejects the truncated body
    assert STORY.startswith(broken["text"])


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
    async with serve(create_app(settings, {"fake": fake})) as url:
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
    assert fake.calls == 1  # one generation, paid once
