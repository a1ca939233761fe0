"""Tool round trips with the Node clients people use (the `openai` and `@anthropic-ai/sdk`
packages, the AI SDK's own `DefaultChatTransport` with a client-side tool, as `useChat` runs
one, and the OpenAI Agents SDK running a function tool over the Responses API), through the
gateway, against a scripted upstream of each of the four dialects: two calls in one answer,
their results sent back, the answer read. What each upstream received is asserted in its own
words: each result attached to its call. The 16 round trips run in one Node process
(tests/ui_sdk/tools.mjs), each client against a gateway and upstream of its own."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

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
CLIENTS = ("openai", "anthropic", "ai", "agents")


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


async def run_node(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each request's result (or the error it ended with), run one after another in one Node
    process: loading the four SDKs took ~1.6 s of each of the 16 runs."""
    if NODE is None:
        pytest.fail("the Node client tests need Node.js (apt-get install nodejs npm)")
    if not (UI_SDK / "node_modules" / "openai").is_dir():
        pytest.fail("the Node clients are not installed: run `make test` (npm ci in tests/ui_sdk)")
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(UI_SDK / "tools.mjs"),
        json.dumps(requests),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=UI_SDK,
    )
    async with asyncio.timeout(180):  # a bound, not a synchronisation
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.splitlines()]


@dataclass
class Round:
    """What one client made of its round trip, and what its upstream received."""

    result: dict[str, Any]
    upstream: ScriptedModel


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rounds(module_env: None) -> dict[tuple[str, str], Round]:
    """Every client on every upstream dialect, each against a gateway and an upstream of its
    own, all the clients in one Node process."""
    cases = [(client, dialect) for client in CLIENTS for dialect in DIALECTS]
    async with AsyncExitStack() as stack:
        served = [await stack.enter_async_context(gateway(dialect)) for _, dialect in cases]
        requests = [
            {"client": client, "url": url, "model": "m"}
            for (client, _), (url, _) in zip(cases, served, strict=True)
        ]
        results = await run_node(requests)
    return {
        case: Round(result, upstream)
        for case, result, (_, upstream) in zip(cases, results, served, strict=True)
    }


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
@pytest.mark.parametrize("client", CLIENTS)
def test_node_clients_complete_a_tool_round_trip_on_every_upstream(
    client: str, dialect: str, rounds: dict[tuple[str, str], Round]
) -> None:
    result, upstream = rounds[client, dialect].result, rounds[client, dialect].upstream
    assert "error" not in result, result["error"]
    assert result["calls"] == [{"city": "Paris"}, {"city": "Rome"}]
    assert result["finish"] in ("tool_calls", "tool_use", "tool-calls")
    assert result["text"] == ANSWER
    assert len(upstream.received) == 2
    attached = received_results(dialect, upstream.received[1].json())
    assert [city for city, _ in attached] == ["Paris", "Rome"]
    assert all(f"18C {city}" in text for city, text in attached)
