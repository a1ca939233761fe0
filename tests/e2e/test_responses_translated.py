"""POST /v1/responses translated (SPEC §4.10, §4.9): a Responses client on Chat Completions,
Anthropic, Gemini and Ollama upstreams, on real sockets. The recorded tool streams of each
upstream come back as the Responses event sequence (numbered, items opened and closed in
order, calls with their arguments, reasoning with the signature for the upstream that made
it); the request's items, tools and choices arrive in the upstream's words; custom tools come
back as custom_tool_call items and namespace tools under their namespace; hosted tools are
dropped and named, or a 400 when forced; stored responses rebuild the conversation for their
owner only, in memory or in Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest

from gateway.app import create_app
from gateway.auth import hash_key
from tests.conftest import CANARY_KEY, settings_from, wire
from tests.e2e.servers import Break, Reply, UpstreamStub, serve
from tests.e2e.test_providers import pieces
from tests.e2e.test_responses_native import KEY_A, KEY_B, client, not_found
from tests.e2e.test_responses_sdk import checked_events

pytestmark = pytest.mark.e2e

CAPTURES = {
    "openai": ("openai/tools.sse", "text/event-stream"),
    "anthropic": ("anthropic/tools.sse", "text/event-stream"),
    "gemini": ("gemini/tools.sse", "text/event-stream"),
    "ollama": ("ollama/tools.ndjson", "application/x-ndjson"),
}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "ollama": "/api/chat"}
TOOLS: list[dict[str, Any]] = [
    {"type": "web_search"},
    {
        "type": "function",
        "name": "write_file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
    {"type": "function", "name": "read_file", "parameters": {"type": "object"}},
    {"type": "custom", "name": "apply_patch", "description": "a patch", "format": {"type": "text"}},
    {
        "type": "namespace",
        "name": "crm",
        "description": "customers",
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
    },
]
BODY: dict[str, Any] = {
    "model": "m",
    "stream": True,
    "instructions": "be brief",
    "input": [
        {"type": "message", "role": "developer", "content": "env facts", "id": "msg_dev"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ],
    "tools": TOOLS,
    "tool_choice": "auto",
    "store": False,
    "prompt_cache_key": "k",
    "client_metadata": {"x": "y"},
    "include": ["reasoning.encrypted_content"],
    "reasoning": {"effort": "low", "summary": "auto"},
}


def config(kind: str, upstream: str, keys: bool = False) -> str:
    base = upstream + "/v1" if kind == "openai" else upstream
    toml = (
        f"[providers.up]\ntype = '{kind}'\nbase_url = '{base}'\napi_key = '{CANARY_KEY}'\n"
        "[models.m]\nprovider = 'up'\nmodel = 'up-model'\n"
    )
    if keys:
        toml += f"[keys.a]\nsha256 = '{hash_key(KEY_A)}'\n[keys.b]\nsha256 = '{hash_key(KEY_B)}'\n"
    return toml


@asynccontextmanager
async def gateway(
    kind: str, *replies: Reply, keys: bool = True, **overrides: Any
) -> AsyncIterator[tuple[str, UpstreamStub]]:
    stub = UpstreamStub(*replies)
    async with serve(stub) as upstream:
        app = create_app(settings_from(config(kind, upstream, keys), **overrides))
        async with serve(app) as url:
            yield url, stub


def recorded(kind: str, size: int = 100_000) -> Reply:
    capture, content_type = CAPTURES[kind]
    return Reply(content_type=content_type, body=pieces(wire(capture), size))


def items_done(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


@pytest.mark.parametrize("kind", list(CAPTURES))
@pytest.mark.parametrize("size", [1, 100_000])
async def test_each_upstreams_tool_stream_is_the_responses_event_sequence(
    kind: str, size: int
) -> None:
    async with gateway(kind, recorded(kind, size)) as (url, stub), client(url) as http:
        response = await http.post("/v1/responses", json=BODY)
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-dropped-tools"] == "web_search"
    events = checked_events(response.content)
    items = items_done(events)
    calls = [item for item in items if item["type"] == "function_call"]
    assert calls and all(call["status"] == "completed" and call["call_id"] for call in calls)
    for call in calls:
        json.loads(call["arguments"] or "{}")  # whole arguments, whatever the upstream's cuts
    completed = events[-1]["response"]
    assert completed["output"] == items
    assert completed["usage"]["output_tokens"] >= 0
    assert any(item["type"] == "message" for item in items)
    if kind != "gemini":
        assert any(item["type"] == "reasoning" for item in items)
    if kind in PATHS:
        assert stub.seen[0].path.startswith(PATHS[kind])


async def test_the_request_arrives_in_the_upstreams_words() -> None:
    async with gateway("openai", recorded("openai")) as (url, stub), client(url) as http:
        body = {
            **BODY,
            "input": [
                *BODY["input"],
                {"type": "function_call", "call_id": "c1", "name": "write_file", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
                {
                    "type": "custom_tool_call",
                    "call_id": "c2",
                    "name": "apply_patch",
                    "input": "*** patch",
                },
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            ],
            "tool_choice": {"type": "function", "name": "lookup", "namespace": "crm"},
            "max_output_tokens": 99,
            "temperature": 0.5,
        }
        response = await http.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    sent = json.loads(stub.seen[0].body)
    assert sent["model"] == "up-model" and sent["max_tokens"] == 99
    assert sent["messages"][0] == {"role": "system", "content": "be brief\n\nenv facts"}
    names = [tool["function"]["name"] for tool in sent["tools"]]
    assert names == ["write_file", "read_file", "apply_patch", "crm__lookup"]
    patch = sent["tools"][2]["function"]["parameters"]
    assert patch["properties"]["input"]["type"] == "string"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "crm__lookup"}}
    calls = [call for m in sent["messages"] for call in m.get("tool_calls") or []]
    assert [call["function"]["name"] for call in calls] == ["write_file", "apply_patch"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"input": "*** patch"}
    results = [m for m in sent["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in results] == [("c1", "ok"), ("c2", "done")]
    assert "opaque" not in stub.seen[0].body.decode()  # another upstream's encrypted reasoning


def chat_call(name: str, arguments: str) -> bytes:
    chunks = [
        {"delta": {"tool_calls": [{"index": 0, "id": "call_x", "function": {"name": name}}]}},
        {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}},
        {"delta": {}, "finish_reason": "tool_calls"},
    ]
    return (
        b"".join(
            b"data: "
            + json.dumps(
                {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, **chunk}]}
            ).encode()
            + b"\n\n"
            for chunk in chunks
        )
        + b"data: [DONE]\n\n"
    )


async def test_custom_and_namespace_calls_come_back_as_the_client_declared_them() -> None:
    replies = (
        Reply(body=[chat_call("apply_patch", json.dumps({"input": "*** Begin Patch"}))]),
        Reply(body=[chat_call("crm__lookup", '{"id": 7}')]),
    )
    async with gateway("openai", *replies) as (url, _stub), client(url) as http:
        custom = checked_events((await http.post("/v1/responses", json=BODY)).content)
        namespaced = checked_events((await http.post("/v1/responses", json=BODY)).content)
    (item,) = items_done(custom)
    assert item["type"] == "custom_tool_call"
    assert (item["name"], item["input"], item["call_id"]) == (
        "apply_patch",
        "*** Begin Patch",
        "call_x",
    )
    kinds = [e["type"] for e in custom]
    assert "response.custom_tool_call_input.done" in kinds
    assert "response.function_call_arguments.delta" not in kinds
    (item,) = items_done(namespaced)
    assert (item["type"], item["name"], item["namespace"]) == ("function_call", "lookup", "crm")


async def test_a_forced_hosted_tool_is_a_400_naming_it() -> None:
    async with gateway("openai", recorded("openai")) as (url, stub), client(url) as http:
        body = {**BODY, "tool_choice": {"type": "web_search"}}
        response = await http.post("/v1/responses", json=body)
    assert response.status_code == 400
    assert "web_search" in response.json()["error"]["message"]
    assert not stub.seen


async def test_a_failure_after_the_first_event_is_response_failed() -> None:
    stream = wire("openai/tools.sse")
    head = stream[: stream.index(b'"name":"read_file"')]
    head = head[: head.rindex(b"\n\n") + 2]
    async with gateway("openai", Reply(body=[head, Break()])) as (url, _), client(url) as http:
        response = await http.post("/v1/responses", json=BODY)
    events = checked_events(response.content)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "upstream_unavailable"


async def test_without_streaming_the_response_object() -> None:
    async with gateway("anthropic", recorded("anthropic")) as (url, _), client(url) as http:
        response = await http.post("/v1/responses", json={**BODY, "stream": False})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "response" and body["status"] == "completed"
    kinds = [item["type"] for item in body["output"]]
    assert kinds.count("function_call") == 2 and "message" in kinds
    reasoning = [item for item in body["output"] if item["type"] == "reasoning"]
    assert reasoning[0]["encrypted_content"].startswith("gw1.anthropic.")
    assert response.headers["x-gateway-dropped-tools"] == "web_search"


async def test_stored_responses_continue_for_their_owner_with_the_whole_conversation() -> None:
    replies = (recorded("anthropic"), recorded("anthropic"))
    async with gateway("anthropic", *replies) as (url, stub):
        async with client(url) as a, client(url, KEY_B) as b:
            first = checked_events(
                (await a.post("/v1/responses", json={**BODY, "store": True})).content
            )
            response_id = first[-1]["response"]["id"]
            calls = [i for i in items_done(first) if i["type"] == "function_call"]
            outputs = [
                {"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}
                for call in calls
            ]
            follow_up = {**BODY, "previous_response_id": response_id, "input": outputs}
            foreign = await b.post("/v1/responses", json=follow_up)
            assert len(stub.seen) == 1
            own = await a.post("/v1/responses", json=follow_up)
            mine = await a.get(f"/v1/responses/{response_id}")
            theirs = await b.get(f"/v1/responses/{response_id}")
    not_found(foreign, response_id)
    assert own.status_code == 200
    sent = json.loads(stub.seen[1].body)
    roles = [message["role"] for message in sent["messages"]]
    assert roles == ["user", "assistant", "user"]
    assistant = sent["messages"][1]["content"]
    kinds = [block["type"] for block in assistant]
    assert kinds[:2] == ["thinking", "redacted_thinking"]  # signatures back to their maker
    assert [b["id"] for b in assistant if b["type"] == "tool_use"] == [c["call_id"] for c in calls]
    results = [b for b in sent["messages"][2]["content"] if b["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == [c["call_id"] for c in calls]
    assert mine.status_code == 200 and mine.json()["id"] == response_id
    assert theirs.status_code == 404


async def test_an_unstored_response_cannot_be_continued() -> None:
    async with gateway("openai", recorded("openai")) as (url, stub), client(url) as http:
        first = checked_events((await http.post("/v1/responses", json=BODY)).content)
        response_id = first[-1]["response"]["id"]
        follow_up = {**BODY, "previous_response_id": response_id}
        response = await http.post("/v1/responses", json=follow_up)
    not_found(response, response_id)
    assert len(stub.seen) == 1


async def test_with_redis_another_replica_continues_a_stored_response(redis_url: str) -> None:
    stub = UpstreamStub(recorded("openai"))
    async with serve(stub) as upstream:
        settings = settings_from(config("openai", upstream, keys=True), redis_url=redis_url)
        first, second = create_app(settings), create_app(settings)
        async with serve(first) as one, serve(second) as two:
            async with client(one) as a_on_one:
                made = await a_on_one.post("/v1/responses", json={**BODY, "store": True})
            await first.state.response_ids.settled()
            response_id = checked_events(made.content)[-1]["response"]["id"]
            follow_up = {**BODY, "previous_response_id": response_id, "input": "and then?"}
            async with client(two) as a_on_two:
                own = await a_on_two.post("/v1/responses", json=follow_up)
    assert own.status_code == 200
    sent = json.loads(stub.seen[1].body)
    assert sent["messages"][-1] == {"role": "user", "content": "and then?"}
    assert any(message.get("tool_calls") for message in sent["messages"])


async def test_the_sdk_runs_a_function_tool_loop_on_a_chat_upstream() -> None:
    replies = (
        Reply(body=[chat_call("write_file", '{"path": "a.txt"}')]),
        Reply(body=[wire("openai/basic.sse")]),
    )
    async with gateway("openai", *replies) as (url, stub):
        sdk = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY_A, max_retries=0)
        async with sdk:
            first = await sdk.responses.create(
                model="m",
                input="write it",
                tools=[TOOLS[1]],  # type: ignore[list-item]
            )
            (call,) = [item for item in first.output if item.type == "function_call"]
            async with sdk.responses.stream(
                model="m",
                previous_response_id=first.id,
                input=[{"type": "function_call_output", "call_id": call.call_id, "output": "ok"}],
                tools=[TOOLS[1]],  # type: ignore[list-item]
            ) as stream:
                final = await stream.get_final_response()
    assert (call.name, call.arguments) == ("write_file", '{"path": "a.txt"}')
    assert final.output_text == "The quick 😀 fox 中文 line\u2028sep nel\u0085!"
    sent = json.loads(stub.seen[1].body)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({**BODY, "input": [{"type": "item_reference", "id": "x"}]}, 400),
        ({**BODY, "input": [{"type": "message", "role": "robot", "content": "x"}]}, 422),
        ({**BODY, "input": 5}, 422),
        ({**BODY, "tools": [{"type": "mystery"}]}, 422),
        ({**BODY, "tool_choice": {"type": "allowed_tools"}}, 400),
        ({**BODY, "text": {"format": {"type": "yaml"}}}, 422),
        ({**BODY, "max_output_tokens": 0}, 422),
        (
            {
                **BODY,
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}
                ],
            },
            400,
        ),
    ],
)
async def test_what_cannot_be_translated_is_a_4xx(body: dict[str, Any], status: int) -> None:
    async with gateway("openai", recorded("openai")) as (url, stub), client(url) as http:
        response = await http.post("/v1/responses", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert not stub.seen


MIXED = (
    "[providers.c]\ntype = 'openai'\nbase_url = '{upstream}/v1'\n"
    "[providers.r]\ntype = 'openai'\nbase_url = '{upstream}/v1'\napi = 'responses'\n"
    "[models.chat]\nprovider = 'c'\n[models.native]\nprovider = 'r'\n"
)


async def test_a_stored_conversation_moves_between_the_paths_as_far_as_it_can() -> None:
    """Made translated, continued natively: the upstream gets the conversation, not an id it
    never made. Made natively, continued translated: the gateway never saw the conversation,
    so the id is not found for that model."""
    replies = (
        recorded("openai"),
        Reply(body=[wire("openai/responses.sse")]),
        Reply(body=[wire("openai/responses.sse")]),
    )
    stub = UpstreamStub(*replies)
    async with serve(stub) as upstream:
        app = create_app(settings_from(MIXED.format(upstream=upstream)))
        async with serve(app) as url, client(url) as http:
            made = await http.post("/v1/responses", json={**BODY, "model": "chat", "store": True})
            response_id = checked_events(made.content)[-1]["response"]["id"]
            follow_up = {"model": "native", "previous_response_id": response_id, "input": "more"}
            natively = await http.post("/v1/responses", json={**follow_up, "stream": True})
            native_id = checked_events(natively.content)[0]["response"]["id"]
            back = {**BODY, "model": "chat", "previous_response_id": native_id}
            refused = await http.post("/v1/responses", json=back)
    assert natively.status_code == 200
    sent = json.loads(stub.seen[1].body)
    assert "previous_response_id" not in sent
    assert sent["input"][0]["role"] == "developer"  # the stored conversation, first
    assert any(item.get("type") == "function_call" for item in sent["input"])
    assert not [item for item in sent["input"] if "id" in item or item["type"] == "reasoning"]
    assert sent["input"][-1] == {"type": "message", "role": "user", "content": "more"}
    not_found(refused, native_id)
    assert len(stub.seen) == 2


async def test_chat_and_anthropic_clients_on_a_responses_only_upstream() -> None:
    """An `api = "responses"` provider serves the other dialects translated: their requests
    go to its /responses, its events come back as their text."""
    stream = wire("openai/responses.sse")
    replies = (Reply(body=[stream]), Reply(body=[stream]))
    expected = "Why did the scarecrow win an award?\n\nBecause he was outstanding in his field!"
    stub = UpstreamStub(*replies)
    async with serve(stub) as upstream:
        toml = (
            f"[providers.up]\ntype = 'openai'\nbase_url = '{upstream}/v1'\napi = 'responses'\n"
            "[models.m]\nprovider = 'up'\nmodel = 'up-model'\n"
        )
        async with serve(create_app(settings_from(toml))) as url, client(url) as http:
            messages = [{"role": "user", "content": "a joke"}]
            chat = await http.post(
                "/v1/chat/completions", json={"model": "m", "messages": messages}
            )
            claude = await http.post(
                "/v1/messages", json={"model": "m", "max_tokens": 50, "messages": messages}
            )
    assert chat.json()["choices"][0]["message"]["content"] == expected
    assert claude.json()["content"][0]["text"] == expected
    assert [seen.path for seen in stub.seen] == ["/v1/responses"] * 2
    sent = json.loads(stub.seen[0].body)
    assert (sent["model"], sent["input"]) == ("up-model", [{"role": "user", "content": "a joke"}])
