"""Codex itself (npm @openai/codex, pinned in tests/agents) completes a small file-writing task
through the gateway: `codex exec -s danger-full-access`, offline, with a temporary CODEX_HOME
whose config.toml names a `model_providers` entry (`wire_api = "responses"`, the only wire
API Codex speaks) at a live gateway on a socket; the gateway key comes from the variable the
entry's `env_key` names, so there is no login. Behind the gateway a scripted Responses
upstream answers first with an `exec_command` call (the shell tool Codex offers) that writes
the file, then, once the command's output comes back attached to the call, with text. The
request takes the native path (SPEC §4.9, §4.10): what the upstream receives is what Codex
sent (its hosted web search and namespace tools included), with the entry's model and the
provider's key.
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
from tests.agents import codex_binary, run_agent
from tests.conftest import CANARY_KEY, settings_from
from tests.e2e.scripted import (
    Call,
    Plan,
    Received,
    RecordingUpstream,
    ScriptedModel,
    Turn,
    provider_config,
    results_sent,
    send_whole,
)
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

GATEWAY_KEY = "sk-gw-codex-test-key-0001"
CALL_ID = "call_GatewayExecCommand01"
CONTENT = "written by Codex, through the gateway"
ANSWER = "The file is written."
USAGE = {
    "input_tokens": 321,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 12,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 333,
}


def sse(*events: dict[str, Any]) -> bytes:
    """Responses events: `event:` and `data:` with the type, `sequence_number` from 0."""
    return b"".join(
        f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n})}\n\n".encode()
        for n, e in enumerate(events)
    )


def answer(response_id: str, item: dict[str, Any], deltas: list[dict[str, Any]]) -> bytes:
    """One output item streamed: created, in progress, the item added, its deltas, the item
    done, completed with usage."""
    response = {
        "id": response_id,
        "object": "response",
        "created_at": 1_796_000_000,
        "status": "in_progress",
        "model": "gpt-upstream",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    started = {**item, "status": "in_progress"}
    if item["type"] == "function_call":
        started["arguments"] = ""
    else:
        started["content"] = []
    done = {**response, "status": "completed", "output": [item], "usage": USAGE}
    return sse(
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": started},
        *deltas,
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    )


def exec_call(work: Path) -> bytes:
    """An `exec_command` call writing the file, its arguments in two fragments."""
    command = f"printf '%s' '{CONTENT}' > {work / 'hello.txt'}"
    arguments = json.dumps({"cmd": command})
    half = len(arguments) // 2
    item = {
        "id": "fc_gateway_1",
        "type": "function_call",
        "status": "completed",
        "call_id": CALL_ID,
        "name": "exec_command",
        "arguments": arguments,
    }
    where = {"output_index": 0, "item_id": "fc_gateway_1"}
    return answer(
        "resp_tool",
        item,
        [
            {"type": "response.function_call_arguments.delta", **where, "delta": piece}
            for piece in (arguments[:half], arguments[half:])
        ]
        + [{"type": "response.function_call_arguments.done", **where, "arguments": arguments}],
    )


def text_answer(text: str) -> bytes:
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {
        "id": "msg_gateway_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }
    where = {"output_index": 0, "item_id": "msg_gateway_1", "content_index": 0}
    empty = {**part, "text": ""}
    return answer(
        "resp_text",
        item,
        [
            {"type": "response.content_part.added", **where, "part": empty},
            {"type": "response.output_text.delta", **where, "delta": text},
            {"type": "response.output_text.done", **where, "text": text},
            {"type": "response.content_part.done", **where, "part": part},
        ],
    )


def outputs(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in body["input"] if item.get("type") == "function_call_output"]


class ScriptedResponses(RecordingUpstream):
    """A Responses upstream: an exec_command call while no command output has come back, text
    after; every request recorded. (The Chat Completions and Anthropic upstreams of the
    translated test are tests.e2e.scripted's ScriptedModel.)"""

    path = "/v1/responses"
    not_found = {"error": {"type": "invalid_request_error", "message": "no such route"}}

    def __init__(self, work: Path) -> None:
        super().__init__()
        self.work = work

    async def answer(self, seen: Received, send: Send) -> None:
        answer = text_answer(ANSWER) if outputs(seen.json()) else exec_call(self.work)
        await send_whole(send, 200, "text/event-stream", answer)


def exec_plan(work: Path) -> Plan:
    """The same script for the translated upstreams: the call, then, with its result, text."""
    command = {"cmd": f"printf '%s' '{CONTENT}' > {work / 'hello.txt'}"}

    def plan(tools: list[str], results: list[dict[str, Any]]) -> Turn:
        if results:
            return Turn(text=ANSWER)
        return Turn(calls=(Call("exec_command", command, id=CALL_ID),))

    return plan


def gateway_config(upstream: str, dialect: str = "responses") -> str:
    """The gateway before a Responses upstream, or a translated one of `dialect`."""
    if dialect == "responses":
        provider = (
            f"[providers.up]\ntype = 'openai'\nbase_url = '{upstream}/v1'\napi = 'responses'\n"
            f"api_key = '{CANARY_KEY}'\n"
        )
    else:
        provider = provider_config(dialect, upstream, CANARY_KEY)
    return (
        provider
        + "[models.codex-gateway]\nprovider = 'up'\nmodel = 'gpt-upstream'\n"
        + f"[keys.codex]\nsha256 = '{hash_key(GATEWAY_KEY)}'\n"
    )


def codex_config(url: str) -> str:
    """The config.toml the README shows, pointed at the gateway under test."""
    return (
        'model = "codex-gateway"\n'
        'model_provider = "gateway"\n'
        "\n"
        "[model_providers.gateway]\n"
        'name = "LLM gateway"\n'
        f'base_url = "{url}/v1"\n'
        'env_key = "GATEWAY_API_KEY"\n'
        'wire_api = "responses"\n'
    )


@asynccontextmanager
async def codex_setup(
    tmp_path: Path, dialect: str = "responses"
) -> AsyncIterator[tuple[str, ScriptedResponses | ScriptedModel]]:
    work = tmp_path / "work"
    work.mkdir()
    upstream: ScriptedResponses | ScriptedModel
    if dialect == "responses":
        upstream = ScriptedResponses(work)
    else:
        upstream = ScriptedModel(dialect, exec_plan(work))
    async with serve(upstream) as upstream_url:
        app = create_app(settings_from(gateway_config(upstream_url, dialect)))
        async with serve(app) as url:
            yield url, upstream


async def run_codex(url: str, tmp_path: Path, prompt: str) -> tuple[int, str, str]:
    home, codex_home = tmp_path / "home", tmp_path / "codex-home"
    home.mkdir()
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(codex_config(url))
    return await run_agent(
        codex_binary(),
        "exec",
        "-s",
        "danger-full-access",
        "--skip-git-repo-check",
        prompt,
        cwd=tmp_path / "work",
        home=home,
        env={"CODEX_HOME": str(codex_home), "GATEWAY_API_KEY": GATEWAY_KEY},
    )


async def test_codex_writes_a_file_through_the_gateway(tmp_path: Path) -> None:
    async with codex_setup(tmp_path) as (url, upstream):
        code, out, err = await run_codex(url, tmp_path, "Write hello.txt for me.")
    assert code == 0, err
    assert out.strip() == ANSWER
    assert (tmp_path / "work" / "hello.txt").read_text() == CONTENT

    assert [(r.method, r.path) for r in upstream.received] == [("POST", "/v1/responses")] * 2
    first, second = (seen.json() for seen in upstream.received)
    for seen in upstream.received:
        assert seen.headers["authorization"] == f"Bearer {CANARY_KEY}"
        assert GATEWAY_KEY not in json.dumps(seen.headers) + seen.body.decode()
    # The command's output came back attached to the call, after the call itself.
    assert not outputs(first)
    (result,) = outputs(second)
    assert result["call_id"] == CALL_ID
    calls = [item for item in second["input"] if item.get("type") == "function_call"]
    assert [(c["call_id"], c["name"]) for c in calls] == [(CALL_ID, "exec_command")]
    assert second["input"].index(calls[0]) < second["input"].index(result)
    # What Codex sends arrives as it sent it (only the model is the entry's): its hosted web
    # search and namespace tools, its system prompt as developer messages with item ids,
    # store: false and its bookkeeping fields.
    for body in (first, second):
        assert body["model"] == "gpt-upstream"
        assert (body["stream"], body["store"]) == (True, False)
        kinds = {tool["type"] for tool in body["tools"]}
        assert {"function", "web_search", "namespace"} <= kinds
        assert any(tool.get("name") == "exec_command" for tool in body["tools"])
        developer = [item for item in body["input"] if item.get("role") == "developer"]
        assert developer and all(item["id"].startswith("msg_") for item in developer)
        assert body["prompt_cache_key"] and "client_metadata" in body


@pytest.mark.parametrize(
    ("dialect", "path"),
    [("openai", "/v1/chat/completions"), ("anthropic", "/v1/messages")],
    ids=["chat", "anthropic"],
)
async def test_codex_writes_a_file_through_a_translated_upstream(
    tmp_path: Path, dialect: str, path: str
) -> None:
    """The same task on a Chat Completions and an Anthropic upstream (SPEC §4.10's translated
    path): Codex's hosted web search is left out, its namespace tools flattened, its
    developer messages the system prompt; the call comes back as Codex declared the tool."""
    async with codex_setup(tmp_path, dialect) as (url, upstream):
        code, out, err = await run_codex(url, tmp_path, "Write hello.txt for me.")
    assert code == 0, err
    assert out.strip() == ANSWER
    assert (tmp_path / "work" / "hello.txt").read_text() == CONTENT
    assert [(r.method, r.path) for r in upstream.received] == [("POST", path)] * 2
    first, second = (seen.json() for seen in upstream.received)
    for seen in upstream.received:
        assert GATEWAY_KEY not in json.dumps(seen.headers) + seen.body.decode()
    assert not results_sent(dialect, first)
    if dialect == "openai":
        names = [tool["function"]["name"] for tool in first["tools"]]
        (result,) = [m for m in second["messages"] if m["role"] == "tool"]
        assert result["tool_call_id"] == CALL_ID
        assert first["messages"][0]["role"] == "system"
    else:
        names = [tool["name"] for tool in first["tools"]]
        (result,) = results_sent(dialect, second)
        assert result["tool_use_id"] == CALL_ID
        assert "Codex" in json.dumps(first["system"])
    assert "exec_command" in names and "web_search" not in names
    assert any("__" in name for name in names)  # a namespace tool, flattened
