"""Tool round trips on the translated path (SPEC §4.9), on real sockets: the official OpenAI
and Anthropic SDKs (Python), and `useChat`'s transport on /ui/chat, call a tool through the gateway against a scripted upstream of
each other dialect, send its result back and get the answer; what each upstream received is
asserted in its own words (the result attached to the right call). Two calls in one answer
(parallel tool use) included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from tests.conftest import settings_from
from tests.e2e.scripted import (
    GEMINI_SIGNATURE,
    Call,
    ScriptedModel,
    Turn,
    calls_sent,
    provider_config,
    results_sent,
)
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

KEY = "sk-scripted-upstream-0001"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PARIS = Call("weather", {"city": "Paris"}, id="call_paris_0001")
ROME = Call("weather", {"city": "Rome"}, id="call_rome_0002")


def weather_plan(tools: list[str], results: list[dict[str, Any]]) -> Turn:
    """Two calls while no result came back, then the answer."""
    assert tools == ["weather"]
    return Turn(text="Sunny in both.") if results else Turn(calls=(PARIS, ROME))


@asynccontextmanager
async def gateway(dialect: str) -> AsyncIterator[tuple[str, ScriptedModel]]:
    upstream = ScriptedModel(dialect, weather_plan)
    async with serve(upstream) as upstream_url:
        config = provider_config(dialect, upstream_url, KEY)
        config += "[models.m]\nprovider = 'up'\nmodel = 'up-model'\n"
        async with serve(create_app(settings_from(config))) as url:
            yield url, upstream


def result_texts(dialect: str, body: dict[str, Any]) -> list[str]:
    """The results the upstream received, in order, as text."""
    found = []
    for result in results_sent(dialect, body):
        if dialect == "gemini":
            found.append(json.dumps(result["response"], sort_keys=True))
        else:
            found.append(result["content"] if isinstance(result["content"], str) else "")
    return found


def assert_results_follow_their_calls(dialect: str, body: dict[str, Any]) -> None:
    """The upstream's second request: its two calls replayed, each result attached to its
    call in the upstream's own way (ids where the dialect has them, names where it has not)."""
    calls, results = calls_sent(dialect, body), results_sent(dialect, body)
    assert len(calls) == 2 and len(results) == 2
    if dialect == "gemini":
        assert [c["functionCall"]["args"] for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
        assert [r["name"] for r in results] == ["weather", "weather"]
        texts = result_texts(dialect, body)
        assert "18C Paris" in texts[0] and "21C Rome" in texts[1]
        return
    if dialect == "anthropic":
        ids = [c["id"] for c in calls]
        assert [r["tool_use_id"] for r in results] == ids
        assert [c["input"] for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    else:  # openai, ollama
        ids = [c.get("id") for c in calls]
        assert [r.get("tool_call_id") for r in results] == ids
    assert result_texts(dialect, body) == ["18C Paris", "21C Rome"]


@pytest.mark.parametrize("dialect", ["anthropic", "gemini", "ollama"])
@pytest.mark.parametrize("stream", [True, False])
async def test_openai_sdk_completes_a_parallel_tool_round_trip(dialect: str, stream: bool) -> None:
    tools: Any = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}}]
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    async with gateway(dialect) as (url, upstream):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        async with client:
            if stream:
                async with client.chat.completions.stream(
                    model="m", messages=messages, tools=tools
                ) as events:
                    first = (await events.get_final_completion()).choices[0]
            else:
                first = (
                    await client.chat.completions.create(model="m", messages=messages, tools=tools)
                ).choices[0]
            assert first.finish_reason == "tool_calls"
            calls = first.message.tool_calls or []
            assert [json.loads(c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
                {"city": "Paris"},
                {"city": "Rome"},
            ]
            assert len({c.id for c in calls}) == 2
            messages.append(first.message.model_dump(exclude_none=True))
            for call, answer in zip(calls, ("18C Paris", "21C Rome"), strict=True):
                messages.append({"role": "tool", "tool_call_id": call.id, "content": answer})
            second = await client.chat.completions.create(model="m", messages=messages, tools=tools)
    assert second.choices[0].message.content == "Sunny in both."
    assert second.choices[0].finish_reason == "stop"
    body = upstream.received[1].json()
    assert_results_follow_their_calls(dialect, body)
    if dialect == "gemini":  # no signature slot: it rode in the call's id, and came back
        assert calls[0].id.endswith(f"~gw1.gemini.{GEMINI_SIGNATURE}")
        assert calls_sent(dialect, body)[0]["thoughtSignature"] == GEMINI_SIGNATURE
        assert "~" not in json.dumps(body)  # ids upstream are the upstream's own


@pytest.mark.parametrize("dialect", ["openai", "gemini", "ollama"])
@pytest.mark.parametrize("stream", [True, False])
async def test_anthropic_sdk_completes_a_parallel_tool_round_trip(
    dialect: str, stream: bool
) -> None:
    tools: Any = [{"name": "weather", "description": "The weather", "input_schema": WEATHER}]
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    async with gateway(dialect) as (url, upstream):
        client = anthropic.AsyncAnthropic(base_url=url, api_key="unused", max_retries=0)
        async with client:
            if stream:
                async with client.messages.stream(
                    model="m", max_tokens=256, messages=messages, tools=tools
                ) as events:
                    first = await events.get_final_message()
            else:
                first = await client.messages.create(
                    model="m", max_tokens=256, messages=messages, tools=tools
                )
            assert first.stop_reason == "tool_use"
            uses = [block for block in first.content if block.type == "tool_use"]
            assert [use.input for use in uses] == [{"city": "Paris"}, {"city": "Rome"}]
            messages.append(
                {"role": "assistant", "content": [b.model_dump() for b in first.content]}
            )
            results = [
                {"type": "tool_result", "tool_use_id": use.id, "content": answer}
                for use, answer in zip(uses, ("18C Paris", "21C Rome"), strict=True)
            ]
            messages.append({"role": "user", "content": results})
            second = await client.messages.create(
                model="m", max_tokens=256, messages=messages, tools=tools
            )
    assert [block.type for block in second.content] == ["text"]
    assert second.content[0].text == "Sunny in both."  # type: ignore[union-attr]
    assert second.stop_reason == "end_turn"
    body = upstream.received[1].json()
    assert_results_follow_their_calls(dialect, body)
    if dialect == "gemini":  # its signature rode in a thinking block and came back to its call
        (thinking,) = [block for block in first.content if block.type == "thinking"]
        assert thinking.signature == f"gw1.gemini.{GEMINI_SIGNATURE}"
        assert calls_sent(dialect, body)[0]["thoughtSignature"] == GEMINI_SIGNATURE


def ui_chunks(body: str) -> list[dict[str, Any]]:
    events = [
        line.removeprefix("data: ") for line in body.split("\n\n") if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini", "ollama"])
async def test_use_chat_completes_a_client_side_tool_round_trip(dialect: str) -> None:
    """`useChat`'s transport, as the AI SDK sends it: the calls stream as tool-input chunks,
    the browser runs them and posts the message back with its tool parts (and the reasoning
    part that carries the upstream's signature); the upstream gets each result on its call."""
    tools = {"weather": {"description": "The weather", "inputSchema": WEATHER}}
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Paris and Rome?"}]}
    async with gateway(dialect) as (url, upstream), httpx.AsyncClient(base_url=url) as http:
        first = await http.post(
            "/ui/chat", json={"id": "chat-1", "messages": [user], "tools": tools, "model": "m"}
        )
        chunks = ui_chunks(first.text)
        kinds = [chunk["type"] for chunk in chunks]
        assert kinds[:2] == ["start", "start-step"] and kinds[-2:] == ["finish-step", "finish"]
        available = [chunk for chunk in chunks if chunk["type"] == "tool-input-available"]
        assert [chunk["input"] for chunk in available] == [{"city": "Paris"}, {"city": "Rome"}]
        assert all("dynamic" not in chunk for chunk in chunks)
        parts: list[dict[str, Any]] = [{"type": "step-start"}]
        for chunk in chunks:
            if chunk["type"] == "reasoning-end" and "providerMetadata" in chunk:
                meta = chunk["providerMetadata"]
                parts.append({"type": "reasoning", "text": "", "providerMetadata": meta})
        for chunk, answer in zip(available, ("18C Paris", "21C Rome"), strict=True):
            parts.append(
                {
                    "type": "tool-weather",
                    "toolCallId": chunk["toolCallId"],
                    "state": "output-available",
                    "input": chunk["input"],
                    "output": answer,
                }
            )
        answer = {"id": "a1", "role": "assistant", "parts": parts}
        second = await http.post(
            "/ui/chat",
            json={"id": "chat-1", "messages": [user, answer], "tools": tools, "model": "m"},
        )
    deltas = [c["delta"] for c in ui_chunks(second.text) if c["type"] == "text-delta"]
    assert "".join(deltas) == "Sunny in both."
    body = upstream.received[1].json()
    assert_results_follow_their_calls(dialect, body)
    if dialect == "gemini":  # the signature came back to the call it signed
        assert calls_sent(dialect, body)[0]["thoughtSignature"] == GEMINI_SIGNATURE
