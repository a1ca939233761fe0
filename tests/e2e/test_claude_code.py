"""Claude Code itself (npm @anthropic-ai/claude-code, pinned in tests/agents) completes a small
file-writing task through the gateway: print mode, offline, `ANTHROPIC_BASE_URL` at a live
gateway on a socket, and behind it a scripted Anthropic upstream on a socket of its own that
answers first with a streamed `Write` tool call, then, once the tool's result comes back, with
text. The request takes the native path (SPEC §4.9): what the upstream receives is what
Claude Code sent, with the entry's model and the provider's key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Send

from gateway.app import create_app
from gateway.auth import hash_key
from tests.agents import claude_binary, run_agent
from tests.conftest import CANARY_KEY, settings_from
from tests.e2e.scripted import Received, RecordingUpstream, send_whole
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

GATEWAY_KEY = "sk-gw-claude-code-test-key-0001"
TOOL_ID = "toolu_01GatewayWriteCall"
CONTENT = "written by Claude Code, through the gateway\n"
ANSWER = "The file is written."


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        f"event: {e['type']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n".encode()
        for e in events
    )


def message_start(message_id: str) -> dict[str, Any]:
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": "claude-upstream",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 321, "output_tokens": 1},
    }
    return {"type": "message_start", "message": message}


def write_call(target: Path) -> bytes:
    """A streamed tool_use of Write, its input in two JSON fragments (as Anthropic streams)."""
    arguments = json.dumps({"file_path": str(target), "content": CONTENT})
    half = len(arguments) // 2
    return sse(
        message_start("msg_tool"),
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": TOOL_ID, "name": "Write", "input": {}},
        },
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in (arguments[:half], arguments[half:])
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 40},
        },
        {"type": "message_stop"},
    )


def text_answer(text: str) -> bytes:
    return sse(
        message_start("msg_text"),
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
        {"type": "message_stop"},
    )


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


class ScriptedAnthropic(RecordingUpstream):
    """An Anthropic upstream: a Write call for a request that offers the Write tool and has
    no result yet, text for everything else; every request recorded."""

    path = "/v1/messages"
    not_found = {"type": "error", "error": {"type": "not_found_error", "message": "no"}}

    def __init__(self, target: Path) -> None:
        super().__init__()
        self.target = target

    async def answer(self, seen: Received, send: Send) -> None:
        data = seen.json()
        offers_write = any(tool.get("name") == "Write" for tool in data.get("tools", []))
        if offers_write and not tool_results(data):
            answer = write_call(self.target)
        else:
            answer = text_answer(ANSWER)
        await send_whole(send, 200, "text/event-stream", answer)


def gateway_config(upstream: str) -> str:
    return (
        f"[providers.up]\ntype = 'anthropic'\nbase_url = '{upstream}'\napi_key = '{CANARY_KEY}'\n"
        "[models.claude-gateway]\nprovider = 'up'\nmodel = 'claude-upstream'\n"
        f"[keys.claude-code]\nsha256 = '{hash_key(GATEWAY_KEY)}'\n"
    )


@asynccontextmanager
async def claude_code_setup(tmp_path: Path) -> AsyncIterator[tuple[str, ScriptedAnthropic]]:
    upstream = ScriptedAnthropic(tmp_path / "work" / "hello.txt")
    async with serve(upstream) as upstream_url:
        app = create_app(settings_from(gateway_config(upstream_url)))
        async with serve(app) as url:
            yield url, upstream


async def run_claude(url: str, tmp_path: Path, prompt: str) -> tuple[int, str, str]:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir(exist_ok=True)
    env = {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": GATEWAY_KEY,
        "ANTHROPIC_MODEL": "claude-gateway",
        "ANTHROPIC_SMALL_FAST_MODEL": "claude-gateway",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-gateway",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    return await run_agent(
        claude_binary(),
        "-p",
        prompt,
        "--model",
        "claude-gateway",
        "--permission-mode",
        "acceptEdits",
        "--allowedTools",
        "Write",
        "--output-format",
        "json",
        cwd=work,
        home=home,
        env=env,
    )


async def test_claude_code_writes_a_file_through_the_gateway(tmp_path: Path) -> None:
    async with claude_code_setup(tmp_path) as (url, upstream):
        code, out, err = await run_claude(url, tmp_path, "Write hello.txt for me.")
    assert code == 0, err
    result = json.loads(out)
    assert (result["is_error"], result["result"]) == (False, ANSWER)
    assert (tmp_path / "work" / "hello.txt").read_text() == CONTENT

    # Two turns, both to Anthropic's Messages API in the SDK's beta form, as Claude Code sent.
    assert [(r.method, r.path, r.query) for r in upstream.received] == [
        ("POST", "/v1/messages", "beta=true")
    ] * 2
    first, second = (seen.json() for seen in upstream.received)
    for seen in upstream.received:
        # The provider's key upstream; the client's (the gateway's key) never.
        assert seen.headers["x-api-key"] == CANARY_KEY
        assert GATEWAY_KEY not in json.dumps(seen.headers) + seen.body.decode()
        assert seen.headers["anthropic-version"] == "2023-06-01"
        assert "claude-code-20250219" in seen.headers["anthropic-beta"].split(",")
    # The tool's result is attached to the call the upstream made, in the next request.
    results = tool_results(second)
    assert [r["tool_use_id"] for r in results] == [TOOL_ID]
    calls = [
        block
        for message in second["messages"]
        if message["role"] == "assistant" and isinstance(message["content"], list)
        for block in message["content"]
        if block["type"] == "tool_use"
    ]
    assert [(c["id"], c["name"]) for c in calls] == [(TOOL_ID, "Write")]
    assert calls[0]["input"] == {"file_path": str(upstream.target), "content": CONTENT}
    assert not tool_results(first)
    # Everything Claude Code sends arrives as it sent it (only the model is the entry's):
    # fields no text relay could carry, hints, and its beta-only controls.
    for body in (first, second):
        assert body["model"] == "claude-upstream"
        assert body["stream"] is True
        assert body["max_tokens"] == 32000
        assert body["thinking"]["type"] == "adaptive"
        assert body["context_management"] == {
            "edits": [{"type": "clear_thinking_20251015", "keep": "all"}]
        }
        assert body["output_config"]["effort"] in ("low", "medium", "high", "xhigh", "max")
        assert json.loads(body["metadata"]["user_id"])  # a JSON string, passed as is
        assert any("cache_control" in block for block in body["system"])
        assert any(message["role"] == "system" for message in body["messages"])
        write = next(tool for tool in body["tools"] if tool["name"] == "Write")
        schema = write["input_schema"]
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert schema["additionalProperties"] is False
        assert any(tool.get("defer_loading") for tool in body["tools"])
