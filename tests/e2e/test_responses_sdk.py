"""The official `openai` SDK's `responses.create` / `responses.stream` through the gateway's
native Responses path (SPEC §4.10), against a scripted Responses upstream on a socket: text, a
function tool loop over `previous_response_id`, a failure mid-stream, a foreign id. The event
order and numbering are also checked by a parser of the test's own, on the raw bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from gateway.app import create_app
from tests.conftest import settings_from
from tests.e2e.servers import Break, Reply, UpstreamStub, serve
from tests.e2e.test_codex import answer, text_answer
from tests.e2e.test_responses_native import KEY_A, KEY_B, config

pytestmark = pytest.mark.e2e

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
ARGUMENTS = '{"city":"Paris"}'
ANSWER = "The file is written."  # text_answer's text, as test_codex scripts it


def weather_call() -> bytes:
    item = {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_weather_1",
        "name": "get_weather",
        "arguments": ARGUMENTS,
    }
    where = {"output_index": 0, "item_id": "fc_1"}
    return answer(
        "resp_tool",
        item,
        [
            {"type": "response.function_call_arguments.delta", **where, "delta": '{"city":'},
            {"type": "response.function_call_arguments.delta", **where, "delta": '"Paris"}'},
            {"type": "response.function_call_arguments.done", **where, "arguments": ARGUMENTS},
        ],
    )


def whole(stream: bytes) -> Reply:
    """A non-streamed answer: the response its stream completes with."""
    completed = checked_events(stream)[-1]
    return Reply(content_type="application/json", body=[json.dumps(completed["response"]).encode()])


@asynccontextmanager
async def sdk(*replies: Reply) -> AsyncIterator[tuple[openai.AsyncOpenAI, UpstreamStub, str]]:
    stub = UpstreamStub(*replies)
    async with serve(stub) as upstream:
        async with serve(create_app(settings_from(config(upstream, keys=True)))) as url:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY_A, max_retries=0)
            async with client:
                yield client, stub, url


def checked_events(body: bytes) -> list[dict[str, Any]]:
    """Each event's `event:` line names its data's type; sequence numbers count from 0 by 1;
    created and in_progress open, one terminal event closes; items open before their deltas
    and close after them."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    terminal = {"response.completed", "response.incomplete", "response.failed"}
    assert kinds[-1] in terminal and not terminal & set(kinds[:-1])
    open_items: set[int] = set()
    for event in events[2:-1]:
        index = event.get("output_index")
        if event["type"] == "response.output_item.added":
            open_items.add(index)
        elif event["type"] == "response.output_item.done":
            open_items.remove(index)
        else:
            assert index in open_items, event
    assert not open_items or kinds[-1] == "response.failed"
    return events


async def test_text_through_responses_stream_and_create() -> None:
    replies = (Reply(body=[text_answer(ANSWER)]), Reply(body=[text_answer(ANSWER)]))
    async with sdk(*replies) as (client, _stub, _url):
        async with client.responses.stream(model="m", input="hi") as stream:
            deltas = [event.delta async for event in stream if event.type.endswith("text.delta")]
            final = await stream.get_final_response()
        created = await client.responses.create(model="m", input="hi", stream=True)
        kinds = [event.type async for event in created]
    assert "".join(deltas) == ANSWER == final.output_text
    assert final.usage is not None and final.usage.output_tokens == 12
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


async def test_a_function_tool_loop_over_previous_response_id() -> None:
    replies = (Reply(body=[weather_call()]), whole(text_answer(ANSWER)))
    async with sdk(*replies) as (client, stub, _url):
        first = await client.responses.create(
            model="m",
            input="Weather in Paris?",
            tools=[TOOL],  # type: ignore[list-item]
            stream=True,
        )
        calls = [event.item async for event in first if event.type == "response.output_item.done"]
        (call,) = calls
        assert call.type == "function_call"
        assert (call.name, call.arguments) == ("get_weather", ARGUMENTS)
        second = await client.responses.create(
            model="m",
            previous_response_id="resp_tool",
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=[TOOL],  # type: ignore[list-item]
        )
    assert second.output_text == ANSWER  # not streamed: the body, whole
    sent = json.loads(stub.seen[1].body)
    assert sent["previous_response_id"] == "resp_tool"
    assert sent["input"] == [
        {"type": "function_call_output", "call_id": "call_weather_1", "output": "sunny"}
    ]
    assert sent["tools"] == [TOOL]


async def test_a_failure_mid_stream_is_response_failed_in_order() -> None:
    whole = text_answer(ANSWER)
    head = whole[: whole.index(b"event: response.output_text.done")]
    async with sdk(Reply(body=[head, Break()])) as (client, _stub, url):
        async with client.responses.stream(model="m", input="hi") as stream:
            kinds = [event.type async for event in stream]
            with pytest.raises(RuntimeError, match=r"response\.completed"):
                await stream.get_final_response()
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {KEY_A}"}) as http:
            raw = await http.post(url + "/v1/responses", json={"model": "m", "stream": True})
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    events = checked_events(raw.content)
    assert events[-1]["response"]["error"]["code"] == "upstream_unavailable"


async def test_the_scripted_streams_pass_the_independent_parser() -> None:
    for stream in (text_answer(ANSWER), weather_call()):
        assert checked_events(stream)[-1]["type"] == "response.completed"


async def test_a_foreign_id_is_openais_400() -> None:
    async with sdk(Reply(body=[text_answer(ANSWER)])) as (client, stub, url):
        await client.responses.create(model="m", input="hi", stream=True)
        other = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY_B, max_retries=0)
        async with other:
            with pytest.raises(openai.BadRequestError) as caught:
                await other.responses.create(
                    model="m", input="more", previous_response_id="resp_text"
                )
            with pytest.raises(openai.NotFoundError):
                await other.responses.retrieve("resp_text")
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    assert len(stub.seen) == 1
