"""The Vercel AI SDK's own client code (`ai`'s DefaultChatTransport, readUIMessageStream and
callCompletionApi, in Node) against a live gateway on a socket (SPEC §4.6).

Node runs tests/ui_sdk/client.mjs (`make test` installs its pinned packages with `npm ci`).
These tests fail, never skip, when Node or the packages are missing: they are the proof that
`useChat` works against the gateway.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.dialects.ui_messages import KEEP_ALIVE, UIReaderResponse
from gateway.providers.fake import load_story
from tests.conftest import CANARY_KEY, settings_from
from tests.e2e.conftest import GatedProvider, wait_for
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

STORY = load_story(None)
UI_SDK = Path(__file__).parents[1] / "ui_sdk"
NODE = shutil.which("node")
GUARD_S = 60
FAKES = """
[providers.fake]
type = 'fake'
chunk_delay_ms = 0
[models.flaky]
provider = 'fake'
params = { fail_after_chunks = 5 }
[models.broken]
provider = 'fake'
params = { fail_status = 503 }
"""
CHUNK_ORDER = ["start", "start-step", "text-start", "text-delta", "text-end", "finish-step"]


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


async def run_sdk(on_wait: Mapping[str, Callable[[], None]] | None = None, **request: Any) -> Any:
    """Run one scenario of client.mjs; its JSON answer. At each `WAIT <label>` it prints,
    `on_wait[label]()` runs, then the script is told to go on."""
    if NODE is None:
        pytest.fail("the AI SDK tests need Node.js (apt-get install nodejs npm)")
    if not (UI_SDK / "node_modules" / "ai").is_dir():
        pytest.fail("the AI SDK is not installed: run `make test` (npm ci in tests/ui_sdk)")
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(UI_SDK / "client.mjs"),
        json.dumps(request),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=UI_SDK,
        limit=1 << 22,
    )
    assert process.stdin is not None and process.stdout is not None
    result: Any = None
    async with asyncio.timeout(GUARD_S):
        async for raw in process.stdout:
            line = raw.decode().rstrip("\n")
            if line.startswith("WAIT "):
                (on_wait or {})[line.removeprefix("WAIT ")]()
                process.stdin.write(b"go\n")
                await process.stdin.drain()
            else:
                result = json.loads(line)
        process.stdin.close()
        _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return result


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with serve(create_app(settings_from(FAKES))) as url:
        yield url


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def chunk_types(result: dict[str, Any]) -> list[str]:
    types: list[str] = []
    for chunk in result["chunks"]:
        if not (types and types[-1] == chunk["type"] == "text-delta"):
            types.append(chunk["type"])
    return types


async def test_use_chat_transport_reads_the_whole_answer(gateway: str) -> None:
    result = await run_sdk(scenario="chat", url=gateway, messages=[user("hi")])
    assert result["errors"] == [] and result["threw"] is None
    assert chunk_types(result) == [*CHUNK_ORDER, "finish"]
    message = result["message"]
    assert message["role"] == "assistant"
    assert message["id"] == result["chunks"][0]["messageId"]
    assert text_of(message) == STORY
    assert [part["type"] for part in message["parts"]] == ["step-start", "text"]
    assert message["parts"][1]["state"] == "done"


async def test_second_turn_sends_the_sdks_own_message_back(gateway: str) -> None:
    # The assistant message as the SDK built it (with its step-start part) is history now.
    first = await run_sdk(scenario="chat", url=gateway, messages=[user("hi")])
    history = [user("hi"), first["message"], user("again", "u2")]
    second = await run_sdk(scenario="chat", url=gateway, messages=history, body={"model": "story"})
    assert second["errors"] == [] and second["threw"] is None
    assert text_of(second["message"]) == STORY
    assert second["message"]["id"] != first["message"]["id"]


async def test_mid_stream_failure_is_an_error_never_a_clean_finish(gateway: str) -> None:
    result = await run_sdk(
        scenario="chat", url=gateway, messages=[user("hi")], body={"model": "flaky"}
    )
    types = chunk_types(result)
    assert types == [*CHUNK_ORDER[:4], "error"]
    assert "finish" not in types
    assert len(result["errors"]) == 1
    assert result["errors"][0].startswith("upstream_unavailable: ")
    assert STORY.startswith(text_of(result["message"]))
    assert text_of(result["message"]) != STORY


async def test_failure_before_the_first_event_is_a_status_and_json_error(gateway: str) -> None:
    result = await run_sdk(
        scenario="chat", url=gateway, messages=[user("hi")], body={"model": "broken"}
    )
    assert json.loads(result["rejected"])["error"]["type"] == "upstream_unavailable"
    unknown = await run_sdk(
        scenario="chat", url=gateway, messages=[user("hi")], body={"model": "nope"}
    )
    assert json.loads(unknown["rejected"])["error"]["type"] == "unknown_model"


async def test_unknown_parts_are_refused_by_name_and_files_are_carried(gateway: str) -> None:
    future = {"type": "hologram", "frames": 3}
    message = {"id": "u1", "role": "user", "parts": [user("hi")["parts"][0], future]}
    result = await run_sdk(scenario="chat", url=gateway, messages=[message])
    error = json.loads(result["rejected"])["error"]
    assert error["type"] == "invalid_request"
    assert "'hologram'" in error["message"]
    image = {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="}
    message = {"id": "u1", "role": "user", "parts": [image]}
    result = await run_sdk(scenario="chat", url=gateway, messages=[message])
    assert "rejected" not in result and result["errors"] == [] and result["threw"] is None
    assert text_of(result["message"]) == STORY


async def test_use_completion_reads_the_answer(gateway: str) -> None:
    result = await run_sdk(scenario="completion", url=gateway, prompt="hi")
    assert result["error"] is None
    assert result["result"] == result["text"] == STORY


async def test_use_completion_reports_a_mid_stream_failure(gateway: str) -> None:
    result = await run_sdk(scenario="completion", url=gateway, prompt="hi", body={"model": "flaky"})
    assert result["result"] is None
    assert result["error"] is not None and result["error"].startswith("upstream_unavailable")


async def test_gateway_key_in_the_transports_headers() -> None:
    import hashlib

    digest = hashlib.sha256(CANARY_KEY.encode()).hexdigest()
    toml = FAKES + f"[keys.frontend]\nsha256 = '{digest}'\n"
    async with serve(create_app(settings_from(toml))) as url:
        refused = await run_sdk(scenario="chat", url=url, messages=[user("hi")])
        allowed = await run_sdk(
            scenario="chat",
            url=url,
            messages=[user("hi")],
            headers={"Authorization": f"Bearer {CANARY_KEY}"},
        )
    assert json.loads(refused["rejected"])["error"]["type"] == "unauthorized"
    assert text_of(allowed["message"]) == STORY


@pytest.mark.parametrize("model", ["story", "flaky"])
async def test_recorded_stream_parses_with_ai_5_0_0(
    gateway: str, tmp_path: Path, model: str
) -> None:
    """ai@5.0.0's chunk schema is strict: every field the gateway writes must be known to it."""
    body = {"id": "c1", "messages": [user("hi")], "model": model}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/ui/chat", json=body)
    recorded = tmp_path / "recorded.sse"
    recorded.write_bytes(response.content)
    result = await run_sdk(scenario="replay", file=str(recorded))
    assert result["threw"] is None
    if model == "story":
        assert result["errors"] == []
        assert chunk_types(result) == [*CHUNK_ORDER, "finish"]
        assert text_of(result["message"]) == STORY
    else:
        assert len(result["errors"]) == 1
        assert chunk_types(result)[-1] == "error"


async def test_resume_after_an_aborted_request_gets_the_whole_message() -> None:
    provider = GatedProvider(("one ", "two ", "three"))
    provider.gates[0].set()
    async with serve(create_app(settings_from(FAKES), {"fake": provider})) as url:
        result = await run_sdk(
            on_wait={"attached": provider.open_all},
            scenario="resume",
            url=url,
            messages=[user("hi")],
        )
    first, resumed = result["first"], result["resumed"]
    assert first[-1] == {"type": "text-delta", "id": "text-0", "delta": "one "}
    assert resumed is not None, "the gateway had nothing to resume"
    assert resumed["errors"] == [] and resumed["threw"] is None
    assert chunk_types(resumed) == [*CHUNK_ORDER, "finish"]
    assert resumed["message"]["id"] == first[0]["messageId"]  # the same message
    assert text_of(resumed["message"]) == "one two three"  # whole, from its start
    assert result["afterEnd"] is None  # 204 once it has ended
    assert provider.calls == 1  # one paid generation for the request and the resume


async def test_stop_ends_every_reader_with_abort() -> None:
    provider = GatedProvider(("one ", "two"))
    provider.gates[0].set()
    async with serve(create_app(settings_from(FAKES), {"fake": provider})) as url:
        result = await run_sdk(scenario="stop", url=url, messages=[user("hi")])
        await wait_for(provider.closed)
    assert result["stopStatus"] == 204
    for reader in result["readers"]:
        assert reader["errors"] == [] and reader["threw"] is None
        assert chunk_types(reader) == [*CHUNK_ORDER[:4], "abort"]
        assert text_of(reader["message"]) == "one "
    ids = {reader["message"]["id"] for reader in result["readers"]}
    assert len(ids) == 1
    assert result["afterStop"] is None
    assert not provider.gates[1].is_set()  # the second delta was never released: cancelled


async def test_recorded_stop_and_keep_alive_parse_with_ai_5_0_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream with a keep-alive comment and a stop (`abort`), as ai@5.0.0 reads it."""
    monkeypatch.setattr(UIReaderResponse, "keep_alive_s", 0.03)
    provider = GatedProvider(("one ", "two"))
    provider.gates[0].set()
    body = {"id": "c1", "messages": [user("hi")]}
    async with (
        serve(create_app(settings_from(FAKES), {"fake": provider})) as url,
        httpx.AsyncClient(base_url=url) as http,
        http.stream("POST", "/ui/chat", json=body) as response,
    ):
        chunks, recorded = response.aiter_raw(), b""
        while KEEP_ALIVE not in recorded:
            recorded += await anext(chunks)
        assert (await http.post("/ui/chat/c1/stop")).status_code == 204
        recorded += b"".join([chunk async for chunk in chunks])
    path = tmp_path / "stopped.sse"
    path.write_bytes(recorded)
    result = await run_sdk(scenario="replay", file=str(path))
    assert result["threw"] is None and result["errors"] == []
    assert chunk_types(result) == [*CHUNK_ORDER[:4], "abort"]
    assert text_of(result["message"]) == "one "


async def test_a_client_side_tool_round_trip_with_the_sdks_own_client() -> None:
    """The AI SDK's client reads the model's reasoning and call into the message's parts (a
    static `tool-get_weather` part in `input-available`, which `onToolCall` would run); the
    app sets the output, as `addToolResult` does, and sends the message back: the model's
    next answer has the result."""
    toml = FAKES + (
        "[models.tools]\nprovider = 'fake'\n"
        "params = { tool_call = { name = 'get_weather', arguments = { city = 'Paris' } }, "
        "reasoning = 'Weather first.' }\n"
    )
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = {
        "model": "tools",
        "tools": {"get_weather": {"description": "Weather", "inputSchema": schema}},
    }
    async with serve(create_app(settings_from(toml))) as url:
        first = await run_sdk(scenario="chat", url=url, messages=[user("weather?")], body=body)
        assert first["errors"] == [] and first["threw"] is None
        message = first["message"]
        # (The stream opens its text part before anything arrives: an empty text part.)
        parts = [part for part in message["parts"] if part.get("text") != ""]
        assert [part["type"] for part in parts] == ["step-start", "reasoning", "tool-get_weather"]
        reasoning, call = parts[1], parts[2]
        assert reasoning["text"] == "Weather first."
        assert reasoning["providerMetadata"]["gateway"]["origin"] == "fake"
        assert (call["state"], call["input"]) == ("input-available", {"city": "Paris"})
        call.update(state="output-available", output={"sky": "clear"})
        second = await run_sdk(
            scenario="chat", url=url, messages=[user("weather?"), message], body=body
        )
    assert second["errors"] == [] and second["threw"] is None
    assert text_of(second["message"]).startswith('The tool answered: {"sky":"clear"}')
