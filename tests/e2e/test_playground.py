"""The playground (SPEC §4.8) in headless Chromium, against a live gateway with the fake provider.

Nothing is mocked on the browser side: the page fetches the gateway's real routes over a real
socket. The gateway side is observed directly: a fake provider that records its cancellation,
the per-request log lines. A screenshot of the finished page is written to tests/artifacts/
(git-ignored) for a human to look at.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.providers.base import ChatRequest, StreamOutcome
from gateway.providers.fake import FakeConfig, FakeProvider, load_story, split_chunks
from tests.conftest import settings_from
from tests.e2e.conftest import GatedProvider, wait_for
from tests.e2e.servers import serve

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

STORY = load_story(None)
STORY_CHUNKS = len(split_chunks(STORY, "word"))
FORMATS = ("text", "sse", "ndjson", "openai", "ui", "anthropic", "responses")
FRAMED = FORMATS[1:]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FAST = "[providers.fake]\ntype='fake'\nchunk_delay_ms=0\n"
BLANK = "\u2013"  # what the page shows in a stat that has no value yet
GUARD_MS = 10_000  # generous guard on browser-side waits; never a timing assertion


class Playground:
    """The page under test, driven as a user would, with everything it loads recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.bodies: dict[str, str | None] = {}  # what the page POSTed, by URL
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("dialog", self._dialog)

    def _request(self, request: Any) -> None:
        self.requests.append(request.url)
        if request.method == "POST":
            self.bodies[request.url] = request.post_data

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def open(self, url: str, expect_models: bool = True) -> None:
        response = await self.page.goto(f"{url}/playground")
        assert response is not None and response.status == 200
        if expect_models:
            await self.page.wait_for_function(
                "() => document.querySelector('#model').options.length > 0", timeout=GUARD_MS
            )

    async def unlock(self, key: str) -> None:
        """Type the gateway key in, as a user would, and wait for the models it unlocks."""
        await self.page.fill("#key", key)
        await self.page.press("#key", "Enter")
        await self.page.wait_for_function(
            "() => document.querySelector('#model').options.length > 0", timeout=GUARD_MS
        )

    async def send(self, fmt: str, model: str | None = "story", prompt: str = "hi") -> None:
        if model is not None:
            await self.page.select_option("#model", model)
        await self.page.select_option("#format", fmt)
        await self.page.fill("#prompt", prompt)
        await self.page.click("#send")

    async def ended(self) -> str:
        """Wait for the run to end; its state (done, stopped, interrupted, error)."""
        await self.page.wait_for_function(
            "() => !['idle', 'streaming'].includes(document.querySelector('#app').dataset.state)",
            timeout=GUARD_MS,
        )
        return await self.state()

    async def state(self) -> str:
        return str(await self.page.get_attribute("#app", "data-state"))

    async def text(self, selector: str) -> str:
        return str(await self.page.eval_on_selector(selector, "element => element.textContent"))

    async def output(self) -> str:
        return await self.text("#output")

    def other_origins(self, url: str) -> list[str]:
        return [seen for seen in self.requests if not seen.startswith(url + "/")]


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


@pytest_asyncio.fixture(loop_scope="module")
async def playground(chromium: Browser) -> AsyncIterator[Playground]:
    context = await chromium.new_context(viewport={"width": 1100, "height": 900})
    try:
        yield Playground(await context.new_page())
    finally:
        await context.close()


async def test_playground_text_arrives_incrementally_in_every_format(
    playground: Playground,
) -> None:
    for fmt in FORMATS:
        gated = GatedProvider()
        async with serve(create_app(settings_from(), {"fake": gated})) as url:
            try:
                await playground.open(url)
                await playground.send(fmt)
                gated.gates[0].set()
                # The first delta is on the page while the upstream still holds the second.
                await playground.page.wait_for_function(
                    "() => document.querySelector('#output').textContent === 'one '",
                    timeout=GUARD_MS,
                )
                assert not gated.gates[1].is_set()
                assert await playground.state() == "streaming", fmt
                assert await playground.text("#ttfd") != BLANK
                assert await playground.page.is_enabled("#stop")
                assert await playground.page.is_disabled("#send")
            finally:
                gated.open_all()  # also on failure, so that the server can stop
            assert await playground.ended() == "done", fmt
        assert await playground.output() == "one two three four "
        deltas = int(await playground.text("#deltas"))
        # Framed formats count their events; text counts the reads, which may merge deltas.
        assert deltas == 4 if fmt != "text" else 2 <= deltas <= 4, fmt
        assert await playground.text("#total") != BLANK
        assert await playground.page.is_enabled("#send")


async def test_playground_every_format_shows_the_whole_story_timings_and_usage(
    playground: Playground,
) -> None:
    async with serve(create_app(settings_from(FAST))) as url:
        await playground.open(url)
        models = await playground.page.eval_on_selector_all(
            "#model option", "options => options.map(option => option.value)"
        )
        assert models == ["story"]
        summaries = {}
        for fmt in FORMATS:
            await playground.send(fmt)
            assert await playground.ended() == "done", fmt
            assert await playground.output() == STORY, fmt
            summaries[fmt] = {
                name: await playground.text(f"#{name}")
                for name in (
                    *("ttfd", "total", "deltas", "deltas-label", "usage", "finish", "served"),
                    "verdict",
                )
            }
        await playground.page.screenshot(path=artifact("playground.png"), full_page=True)
    for fmt, summary in summaries.items():
        assert summary["ttfd"].endswith("ms") or summary["ttfd"].endswith(" s"), fmt
        assert summary["total"].endswith("ms") or summary["total"].endswith(" s"), fmt
        assert summary["served"] == "story (fake)", fmt
        assert summary["verdict"].startswith("Done"), fmt
    for fmt in FRAMED:
        assert summaries[fmt]["deltas"] == str(STORY_CHUNKS), fmt
        assert summaries[fmt]["deltas-label"] == "Deltas"
    for fmt in ("sse", "ndjson", "openai", "anthropic", "responses"):
        assert f"{STORY_CHUNKS} out" in summaries[fmt]["usage"], fmt
    for fmt in ("sse", "ndjson", "openai"):
        assert summaries[fmt]["finish"] == "stop"
    assert summaries["anthropic"]["finish"] == "end_turn"  # Anthropic's words for it
    assert summaries["responses"]["finish"] == "completed"  # the response's status
    # ai 5's `finish` chunk is a strict object with no usage and no reason: nothing to show.
    assert summaries["ui"]["usage"] == "not sent in this format"
    assert summaries["ui"]["finish"] == BLANK
    # Text has no frames: the count is of what the browser read, and no usage travels with it.
    assert 1 <= int(summaries["text"]["deltas"]) <= STORY_CHUNKS
    assert summaries["text"]["deltas-label"] == "Reads"
    assert summaries["text"]["usage"] == "not sent in this format"
    assert playground.other_origins(url) == []  # nothing loaded from anywhere else
    assert playground.console_errors == []  # in particular no CSP violation
    assert (ARTIFACTS / "playground.png").stat().st_size > 0


class HeldFake(FakeProvider):
    """The real fake provider, held before chunk `hold_at` until `gate` opens, recording how
    its stream ended."""

    def __init__(self, hold_at: int) -> None:
        super().__init__(FakeConfig(chunk_delay_ms=0), pace=self._hold)
        self.hold_at = hold_at
        self.gate = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.completed = False

    async def _hold(self, index: int) -> None:
        if index >= self.hold_at:
            await self.gate.wait()

    async def stream(
        self, request: ChatRequest, outcome: StreamOutcome
    ) -> AsyncIterator[list[str]]:
        try:
            async for batch in super().stream(request, outcome):
                yield batch
            self.completed = True
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled.set()
            raise


FAILING = (
    "[models.broken]\nprovider='fake'\nparams={fail_status=503}\n"
    "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=5}\n"
)
PREFIX = "".join(split_chunks(STORY, "word")[:5])
ERROR_TYPE = "upstream_unavailable"


async def test_playground_failures_are_errors_or_interruptions_never_done(
    playground: Playground,
) -> None:
    seen = {}
    fake = HeldFake(hold_at=5)
    async with serve(create_app(settings_from(FAILING), {"fake": fake})) as url:
        await playground.open(url)
        for fmt in FORMATS:
            await playground.send(fmt, model="broken")
            seen["broken", fmt] = (
                await playground.ended(),
                await playground.text("#verdict"),
                await playground.output(),
            )
            fake.gate = asyncio.Event()
            await playground.send(fmt, model="flaky")
            try:
                # Break the stream only once the page shows what came before (a browser drops
                # what it had not yet handed to the reader when a body fails).
                await playground.page.wait_for_function(
                    "(prefix) => document.querySelector('#output').textContent === prefix",
                    arg=PREFIX,
                    timeout=GUARD_MS,
                )
            finally:
                fake.gate.set()
            seen["flaky", fmt] = (
                await playground.ended(),
                await playground.text("#verdict"),
                await playground.output(),
            )
            if fmt == "text":
                await playground.page.screenshot(path=artifact("playground-interrupted.png"))
    for fmt in FORMATS:
        # Anthropic's dialect has its own statuses and types: an upstream 503 is its 529.
        before = "overloaded_error: 529" if fmt == "anthropic" else f"{ERROR_TYPE}: 502"
        kind = "api_error" if fmt == "anthropic" else ERROR_TYPE
        state, verdict, output = seen["broken", fmt]
        assert state == "error", fmt
        assert verdict == f"Error {before} scripted failure: HTTP 503", fmt
        assert output == ""
        state, verdict, output = seen["flaky", fmt]
        assert output == PREFIX, fmt
        if fmt == "text":  # the connection ends without its last chunk: no type to show
            assert state == "interrupted"
            assert "incomplete" in verdict
        else:  # the in-band error event, with its type and message
            assert state == "error", fmt
            assert verdict == f"Error {kind}: scripted failure: the stream broke", fmt


HELD_TEXT = "".join(split_chunks(STORY, "word")[:2])
# An orphaned UI chat answer would run on for this long: only a stop by name ends it in time.
NO_ORPHAN_TIMEOUT = "[resume]\norphan_timeout_s = 600\n"
STOP_CASES = [*((fmt, False) for fmt in FORMATS), ("ui", True)]  # the UI chat with a key too


def stops(playground: Playground) -> list[str]:
    return [seen for seen in playground.requests if seen.endswith("/stop")]


@pytest.mark.parametrize(("fmt", "keyed"), STOP_CASES)
async def test_playground_stop_aborts_and_the_gateway_cancels_the_upstream(
    playground: Playground, fmt: str, keyed: bool
) -> None:
    fake = HeldFake(hold_at=2)
    keys = f"[keys.web]\nsha256 = '{hash_key(KEY)}'\n" if keyed else ""
    app = create_app(settings_from(NO_ORPHAN_TIMEOUT + keys), {"fake": fake})
    async with serve(app) as url:
        try:
            await playground.open(url, expect_models=not keyed)
            if keyed:
                await playground.unlock(KEY)
            await playground.send(fmt)
            await playground.page.wait_for_function(
                "(text) => document.querySelector('#output').textContent === text",
                arg=HELD_TEXT,
                timeout=GUARD_MS,
            )
            await playground.page.click("#stop")
            assert await playground.ended() == "stopped", fmt
            await wait_for(fake.cancelled)  # the gateway closed the upstream stream
        finally:
            fake.gate.set()  # also on failure, so that the server can stop
        chats = [seen for seen in playground.bodies if seen.endswith("/ui/chat")]
    assert not fake.completed
    assert await playground.output() == HELD_TEXT
    assert "Stopped" in await playground.text("#verdict")
    assert await playground.page.is_disabled("#stop")
    if fmt == "ui":  # its answer outlives the request: the page stopped it by name
        (chat,) = chats
        chat_id = json.loads(playground.bodies[chat] or "")["id"]
        assert stops(playground) == [f"{url}/ui/chat/{chat_id}/stop"]
    else:
        assert stops(playground) == []


async def test_playground_shows_a_ui_chat_stopped_elsewhere_as_stopped(
    playground: Playground,
) -> None:
    fake = HeldFake(hold_at=2)
    app = create_app(settings_from(NO_ORPHAN_TIMEOUT), {"fake": fake})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        try:
            await playground.open(url)
            await playground.send("ui")
            await playground.page.wait_for_function(
                "(text) => document.querySelector('#output').textContent === text",
                arg=HELD_TEXT,
                timeout=GUARD_MS,
            )
            chat_id = json.loads(playground.bodies[f"{url}/ui/chat"] or "")["id"]
            stopped = await http.post(f"/ui/chat/{chat_id}/stop")  # another tab, say
            state = await playground.ended()
            await wait_for(fake.cancelled)
        finally:
            fake.gate.set()
    assert stopped.status_code == 204
    assert state == "stopped"  # the stream's `abort`: neither done nor an error
    assert "Stopped at the gateway" in await playground.text("#verdict")
    assert await playground.output() == HELD_TEXT
    assert stops(playground) == []  # the page did not stop it itself


# What each framed format's reader makes of event sequences, [event type, data] each: only the
# format's own end marker is done; a `[DONE]` that follows an error or an abort is not.
END_MARKERS = [
    ("ui", [["message", "[DONE]"]], []),
    ("ui", [["message", '{"type":"finish"}']], ["done"]),
    (
        "ui",
        [
            ["message", '{"type":"error","errorText":"upstream_timeout: a: b"}'],
            ["message", "[DONE]"],
        ],
        ["error upstream_timeout: a: b"],
    ),
    (
        "ui",
        [["message", '{"type":"error","errorText":"no type here"}']],
        ["error error: no type here"],
    ),
    ("ui", [["message", '{"type":"abort"}'], ["message", "[DONE]"]], ["stopped"]),
    ("anthropic", [["message_stop", '{"type":"message_stop"}']], ["done"]),
    ("anthropic", [["ping", '{"type":"ping"}']], []),
    (
        "anthropic",
        [["error", '{"type":"error","error":{"type":"overloaded_error","message":"busy"}}']],
        ["error overloaded_error: busy"],
    ),
    (
        "anthropic",
        [
            [
                "content_block_delta",
                '{"type":"content_block_delta","delta":{"type":"x","text":"no"}}',
            ]
        ],
        [],
    ),
    ("openai", [["message", "[DONE]"]], ["done"]),  # OpenAI's own end marker
    ("responses", [["response.in_progress", '{"type":"response.in_progress"}']], []),
    (
        "responses",
        [["response.completed", '{"type":"response.completed","response":{"status":"completed"}}']],
        ["done"],
    ),
    (
        "responses",
        [
            [
                "response.failed",
                '{"type":"response.failed","response":{"error":{"code":"c","message":"m"}}}',
            ]
        ],
        ["error c: m"],
    ),
]
READ_EVENTS = """([name, events]) => {
  const seen = [];
  const sink = {
    summary: { finish_reason: null, usage: null },
    delta: (text) => seen.push("delta " + text),
    done: () => seen.push("done"),
    error: (type, message) => seen.push("error " + type + ": " + message),
    stopped: () => seen.push("stopped"),
  };
  for (const [type, data] of events) FORMATS[name].onEvent({ type, data }, sink);
  return seen;
}"""


async def test_playground_formats_are_done_only_on_their_own_end_marker(
    playground: Playground,
) -> None:
    async with serve(create_app(settings_from(FAST))) as url:
        await playground.open(url)
        for name, events, expected in END_MARKERS:
            assert await playground.page.evaluate(READ_EVENTS, [name, events]) == expected, events


class Payload:
    TEXT = (
        "<b>bold?</b> <i>no</i>\n"
        "<script>window.__xss = 'script'; alert('script')</script>\n"
        "<img src=x onerror=\"window.__xss = 'img'; alert('img')\">\n"
        '<a href="javascript:alert(1)">link</a> &amp; &lt;entity&gt;\n'
        "<svg onload=alert('svg')></svg></pre><pre>\n"
    )
    MODEL = "<img/src=y/onerror=window.__xss='model'>"


async def test_playground_shows_html_in_the_output_as_literal_text(
    playground: Playground, tmp_path: Path
) -> None:
    (tmp_path / "payload.txt").write_text(Payload.TEXT)
    settings = settings_from(
        FAST
        + "[providers.html]\ntype='fake'\nchunk_delay_ms=0\nchunking='line'\n"
        + f"script='{tmp_path / 'payload.txt'}'\n"
        + "[models.html]\nprovider='html'\n"
        + f'[models."{Payload.MODEL}"]\nprovider="html"\n'
    )
    async with serve(create_app(settings)) as url:
        await playground.open(url)
        options = await playground.page.eval_on_selector_all(
            "#model option", "options => options.map(option => option.textContent)"
        )
        assert Payload.MODEL in options  # a model name is text too
        outputs = []
        for fmt, model in [*((fmt, "html") for fmt in FORMATS), ("sse", Payload.MODEL)]:
            await playground.send(fmt, model=model)
            assert await playground.ended() == "done", fmt
            outputs.append(await playground.output())
            assert await playground.page.eval_on_selector("#output", "e => e.children.length") == 0
        executed = await playground.page.evaluate("() => window.__xss === undefined")
    assert outputs == [Payload.TEXT] * (len(FORMATS) + 1)
    assert executed is True  # nothing set window.__xss
    assert playground.dialogs == []
    assert not [seen for seen in playground.requests if seen.endswith(("/x", "/y"))]
    assert playground.console_errors == []


KEY = "pg-test-key-0123456789"
KEYED = FAST + f"[keys.web]\nsha256 = '{hash_key(KEY)}'\n"


async def test_playground_with_keys_shows_401_until_the_key_is_typed_in(
    playground: Playground,
) -> None:
    async with serve(create_app(settings_from(KEYED))) as url:
        await playground.open(url, expect_models=False)
        await playground.page.wait_for_function(
            "() => document.querySelector('#models-note').textContent.includes('401')",
            timeout=GUARD_MS,
        )
        await playground.send("sse", model=None)
        assert await playground.ended() == "error"
        before = await playground.text("#verdict")
        await playground.unlock(KEY)
        await playground.send("sse")
        assert await playground.ended() == "done"
        stored = await playground.page.evaluate(
            "() => [localStorage.length, sessionStorage.length, document.cookie, location.href]"
        )
    assert "unauthorized" in before and "401" in before
    assert await playground.output() == STORY
    assert stored == [0, 0, "", f"{url}/playground"]
    assert not [seen for seen in playground.requests if KEY in seen]
