"""Tool round trips with the Node clients people use (the `openai` and `@anthropic-ai/sdk`
packages, the AI SDK's own `DefaultChatTransport` with a client-side tool, as `useChat` runs
one, and the OpenAI Agents SDK running a function tool over the Responses API), through the gateway, against a scripted upstream of each of the four dialects: two
calls in one answer, their results sent back, the answer read. What each upstream received
is asserted in its own words: each result attached to its call (tests/ui_sdk/tools.mjs)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests.conftest import settings_from
from tests.e2e.scripted import (
    DIALECTS,
    Call,
    ScriptedModel,
    Turn,
    calls_sent,
    provider_config,
    results_sent,
)
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

UI_SDK = Path(__file__).parents[1] / "ui_sdk"
NODE = shutil.which("node")
CALLS = (
    Call("weather", {"city": "Paris"}, id="call_paris_01"),
    Call("weather", {"city": "Rome"}, id="call_rome_02"),
)
ANSWER = "Sunny in both."


def plan(tools: list[str], results: list[dict[str, Any]]) -> Turn:
    assert tools == ["weather"]
    return Turn(text=ANSWER) if results else Turn(calls=CALLS)


@asynccontextmanager
async def gateway(dialect: str) -> AsyncIterator[tuple[str, ScriptedModel]]:
    upstream = ScriptedModel(dialect, plan)
    async with serve(upstream) as upstream_url:
        config = provider_config(dialect, upstream_url, "sk-upstream-node-0001")
        config += "[models.m]\nprovider = 'up'\nmodel = 'up-model'\n"
        async with serve(create_app(settings_from(config))) as url:
            yield url, upstream


async def run_node(**request: Any) -> dict[str, Any]:
    if NODE is None:
        pytest.fail("the Node client tests need Node.js (apt-get install nodejs npm)")
    if not (UI_SDK / "node_modules" / "openai").is_dir():
        pytest.fail("the Node clients are not installed: run `make test` (npm ci in tests/ui_sdk)")
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(UI_SDK / "tools.mjs"),
        json.dumps(request),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=UI_SDK,
    )
    async with asyncio.timeout(60):  # a bound, not a synchronisation
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    assert "error" not in result, result["error"]
    return result


def received_results(dialect: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(the call each result is attached to, the result's text), in the upstream's words:
    by id where the dialect has ids, by name and order for Gemini."""
    calls, results = calls_sent(dialect, body), results_sent(dialect, body)
    if dialect == "gemini":
        arguments = [call["functionCall"]["args"]["city"] for call in calls]
        return [
            (city, json.dumps(r["response"])) for city, r in zip(arguments, results, strict=True)
        ]
    if dialect == "anthropic":
        by_id = {call["id"]: call["input"]["city"] for call in calls}
        return [(by_id[r["tool_use_id"]], r["content"]) for r in results]
    by_id = {call["id"]: call["function"]["arguments"] for call in calls}
    cities = {key: (json.loads(a) if isinstance(a, str) else a)["city"] for key, a in by_id.items()}
    return [(cities[r["tool_call_id"]], r["content"]) for r in results]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("client", ["openai", "anthropic", "ai", "agents"])
async def test_node_clients_complete_a_tool_round_trip_on_every_upstream(
    client: str, dialect: str
) -> None:
    async with gateway(dialect) as (url, upstream):
        result = await run_node(client=client, url=url, model="m")
    assert result["calls"] == [{"city": "Paris"}, {"city": "Rome"}]
    assert result["finish"] in ("tool_calls", "tool_use", "tool-calls")
    assert result["text"] == ANSWER
    assert len(upstream.received) == 2
    attached = received_results(dialect, upstream.received[1].json())
    assert [city for city, _ in attached] == ["Paris", "Rome"]
    assert all(f"18C {city}" in text for city, text in attached)
