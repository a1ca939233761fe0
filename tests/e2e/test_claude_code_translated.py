"""Claude Code itself on a model of another dialect (SPEC §4.9, the translated path): the same
file-writing task as tests/e2e/test_claude_code.py, against a scripted OpenAI-compatible,
Gemini and Ollama upstream. Claude Code sends adaptive thinking, `context_management`,
`output_config.effort`, `cache_control` everywhere, a `role: "system"` message inside
`messages`, a deferred placeholder tool and JSON Schemas with `$schema` and
`additionalProperties`; each upstream gets what its dialect can say of them, and the tool's
result attached to the call it made."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth import hash_key
from tests.conftest import settings_from
from tests.e2e.scripted import (
    Call,
    ScriptedModel,
    Turn,
    calls_sent,
    provider_config,
    results_sent,
)
from tests.e2e.servers import serve
from tests.e2e.test_claude_code import ANSWER, CONTENT, GATEWAY_KEY, run_claude

pytestmark = pytest.mark.e2e

KEY = "sk-scripted-upstream-for-claude-code-0001"


def write_plan(target: Path) -> Any:
    def plan(tools: list[str], results: list[dict[str, Any]]) -> Turn:
        if "Write" in tools and not results:
            return Turn(calls=(Call("Write", {"file_path": str(target), "content": CONTENT}),))
        return Turn(text=ANSWER)

    return plan


@asynccontextmanager
async def claude_code_on(dialect: str, tmp_path: Path) -> AsyncIterator[tuple[str, ScriptedModel]]:
    upstream = ScriptedModel(dialect, write_plan(tmp_path / "work" / "hello.txt"))
    async with serve(upstream) as upstream_url:
        config = provider_config(dialect, upstream_url, KEY)
        config += "[models.claude-gateway]\nprovider = 'up'\nmodel = 'up-model'\n"
        config += f"[keys.claude-code]\nsha256 = '{hash_key(GATEWAY_KEY)}'\n"
        async with serve(create_app(settings_from(config))) as url:
            yield url, upstream


def system_text(dialect: str, body: dict[str, Any]) -> str:
    if dialect == "gemini":
        return "".join(part["text"] for part in body["systemInstruction"]["parts"])
    return "\n".join(
        m["content"]
        for m in body["messages"]
        if m["role"] == "system" and isinstance(m["content"], str)
    )


@pytest.mark.parametrize("dialect", ["openai", "gemini", "ollama"])
async def test_claude_code_writes_a_file_through_a_translated_model(
    dialect: str, tmp_path: Path
) -> None:
    async with claude_code_on(dialect, tmp_path) as (url, upstream):
        code, out, err = await run_claude(url, tmp_path, "Write hello.txt for me.")
    assert code == 0, err
    result = json.loads(out)
    assert (result["is_error"], result["result"]) == (False, ANSWER)
    assert (tmp_path / "work" / "hello.txt").read_text() == CONTENT
    main = [seen.json() for seen in upstream.received if "Write" in json.dumps(seen.json())]
    assert len(main) >= 2
    first, second = main[0], main[-1]
    # Its hints are not requests: nothing of them reaches another dialect.
    for body in (first, second):
        sent = json.dumps(body)
        for hint in ("cache_control", "context_management", "defer_loading", "clear_thinking"):
            assert hint not in sent
    # The role: "system" message inside `messages` joined the system prompt.
    assert "Claude" in system_text(dialect, first)
    # The call replayed and its result attached to it, in the upstream's own words.
    (call,) = calls_sent(dialect, second)
    (answer,) = results_sent(dialect, second)
    if dialect == "gemini":
        assert call["functionCall"]["name"] == "Write"
        assert answer["name"] == "Write"
    else:
        assert call["function"]["name"] == "Write"
        assert answer["tool_call_id"] == call.get("id")
