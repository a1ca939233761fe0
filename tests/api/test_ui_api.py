"""POST /ui/chat and /ui/completion in process: the UI message stream's events, ids and headers,
what reaches the provider, and every refusal before the commit point (SPEC §4.6)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects.ui_messages import delta_frame, error_text
from gateway.parts import ToolCall, ToolResult
from gateway.providers.base import ChatRequest, StreamOutcome
from gateway.providers.fake import load_story, split_chunks
from tests.api.test_fuzz import FUZZ, check, json_values
from tests.conftest import CANARY_KEY, FAST_FAKE, app_client, settings_from

STORY = load_story(None)
FAULTS = (
    FAST_FAKE
    + """
[models.flaky]
provider = "fake"
params = { fail_after_chunks = 3 }
[models.broken]
provider = "fake"
params = { fail_status = 500 }
[models.told]
provider = "recording"
params = { system = "You are the entry's assistant." }
[models.recorded]
provider = "recording"
"""
)


class RecordingProvider:
    """Records the adapter request it was given; answers two deltas."""

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    async def stream(
        self, request: ChatRequest, outcome: StreamOutcome
    ) -> AsyncIterator[list[str]]:
        self.requests.append(request)
        yield ["Hello"]
        yield [" there"]
        outcome.finish_reason = "stop"

    async def aclose(self) -> None:
        return None


@pytest.fixture
def recording() -> RecordingProvider:
    return RecordingProvider()


@pytest.fixture
async def client(recording: RecordingProvider) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_from(
        FAULTS + "[providers.recording]\ntype = 'fake'\n", max_body_bytes=20_000
    )
    async with app_client(settings, {"recording": recording}) as (http, _):
        yield http


def user(text: str) -> dict[str, Any]:
    return {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}


def chat_body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "chat-1", "messages": list(messages or [user("hi")]), **extra}


def events(body: str) -> list[Any]:
    """The `data:` payloads, in order ([DONE] as the string)."""
    found = []
    for block in body.split("\n\n"):
        if block.startswith("data: "):
            data = block.removeprefix("data: ")
            found.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert block == "", block
    return found


async def test_chat_event_order_ids_and_text(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/chat", json=chat_body())
    assert response.status_code == 200
    found = events(response.text)
    start, start_step, text_start, *deltas, text_end, finish_step, finish, done = found
    assert start["type"] == "start" and start["messageId"].startswith("msg-")
    assert set(start) == {"type", "messageId"}
    assert start_step == {"type": "start-step"}
    assert text_start == {"type": "text-start", "id": "text-0"}
    assert {d["type"] for d in deltas} == {"text-delta"}
    assert {d["id"] for d in deltas} == {"text-0"}
    assert "".join(d["delta"] for d in deltas) == STORY
    # one event per upstream delta, each exactly as the provider chunked it
    assert [d["delta"] for d in deltas] == list(split_chunks(STORY, "word"))
    assert text_end == {"type": "text-end", "id": "text-0"}
    assert finish_step == {"type": "finish-step"}
    assert finish == {"type": "finish"}
    assert done == "[DONE]"


async def test_every_stream_gets_its_own_message_id(client: httpx.AsyncClient) -> None:
    first = events((await client.post("/ui/chat", json=chat_body())).text)[0]
    second = events((await client.post("/ui/chat", json=chat_body())).text)[0]
    assert first["messageId"] != second["messageId"]


async def test_headers_of_the_ui_message_stream(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/chat", json=chat_body(), headers={"X-Request-ID": "r-1"})
    headers = response.headers
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert headers["x-accel-buffering"] == "no"
    assert headers["x-request-id"] == "r-1"
    assert headers["x-gateway-model"] == "story"
    assert headers["x-gateway-provider"] == "fake"
    assert "content-encoding" not in headers
    gzip = await client.post("/ui/chat", json=chat_body(), headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in gzip.headers


async def test_mid_stream_failure_is_an_error_event_then_done(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/chat", json=chat_body(model="flaky"))
    assert response.status_code == 200
    *head, error, done = events(response.text)
    assert [e["type"] for e in head] == ["start", "start-step", "text-start", *["text-delta"] * 3]
    assert error["type"] == "error" and set(error) == {"type", "errorText"}
    assert error["errorText"].startswith("upstream_unavailable: ")
    assert done == "[DONE]"


async def test_failure_before_the_first_event_is_a_status(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/chat", json=chat_body(model="broken"))
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "upstream_unavailable"
    unknown = await client.post("/ui/completion", json={"prompt": "hi", "model": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "unknown_model"


async def test_completion_streams_the_prompts_answer(
    client: httpx.AsyncClient, recording: RecordingProvider
) -> None:
    response = await client.post(
        "/ui/completion", json={"prompt": "Say hi", "model": "recorded", "max_tokens": 7}
    )
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    found = events(response.text)
    assert [e["delta"] for e in found if e != "[DONE]" and e["type"] == "text-delta"] == [
        "Hello",
        " there",
    ]
    (request,) = recording.requests
    assert [(m.role, m.content) for m in request.messages] == [("user", "Say hi")]
    assert request.max_tokens == 7


async def test_text_parts_become_the_providers_messages(
    client: httpx.AsyncClient, recording: RecordingProvider
) -> None:
    history = [
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
        {
            "id": "u1",
            "role": "user",
            "parts": [
                {"type": "text", "text": "Hello, "},
                {"type": "text", "text": "wörld", "state": "done"},
            ],
        },
        {
            "id": "a1",
            "role": "assistant",
            "metadata": {"any": "thing"},
            "parts": [
                {"type": "step-start"},
                {"type": "text", "text": "Hi!", "state": "done", "providerMetadata": {}},
            ],
        },
        {"id": "a2", "role": "assistant", "parts": [{"type": "step-start"}]},  # stopped early
        user("And now?"),
    ]
    body = chat_body(
        *history,
        model="recorded",
        system="Answer in English.",
        temperature=0.5,
        trigger="submit-message",
        messageId=None,
    )
    response = await client.post("/ui/chat", json=body)
    assert response.status_code == 200, response.text
    (request,) = recording.requests
    assert request.system == "Answer in English.\n\nBe brief."
    assert [(m.role, m.content) for m in request.messages] == [
        ("user", "Hello, wörld"),
        ("assistant", "Hi!"),
        ("user", "And now?"),
    ]
    assert request.temperature == 0.5


async def test_the_model_entrys_system_prompt_applies_when_the_client_sends_none(
    client: httpx.AsyncClient, recording: RecordingProvider
) -> None:
    await client.post("/ui/chat", json=chat_body(model="told"))
    await client.post("/ui/chat", json=chat_body(model="told", system="Mine."))
    default, own = recording.requests
    assert default.system == "You are the entry's assistant."
    assert "system" not in default.extra
    assert own.system == "Mine."


@pytest.mark.parametrize(
    ("part", "named"),
    [
        ({"type": "file", "mediaType": "image/png", "url": "data:,"}, "base64 data URL"),
        ({"type": "reasoning", "text": "hmm"}, "'reasoning'"),
        ({"type": "tool-weather", "toolCallId": "t", "state": "input-available"}, "'tool-weather'"),
        ({"type": "future-part", "x": 1}, "'future-part'"),
    ],
)
async def test_parts_a_user_cannot_send_are_422_saying_which(
    client: httpx.AsyncClient, part: dict[str, Any], named: str
) -> None:
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}, part]}
    response = await client.post("/ui/chat", json=chat_body(message))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert named in error["message"] and "messages.0.parts.1" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [user("hi")]},  # no chat id
        chat_body(user("hi"), prompt="hi"),  # /stream's prompt is not a useChat field
        chat_body(user("hi"), unknown=1),
        chat_body(user("hi"), trigger="resume-stream"),
        {"id": "a/b", "messages": [user("hi")]},  # would not fit the resume URL
        {"id": "", "messages": [user("hi")]},
        {"id": "c", "messages": []},
        {
            "id": "c",
            "messages": [{"id": "a", "role": "assistant", "parts": [{"type": "step-start"}]}],
        },
        {"id": "c", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text"}]}]},
        {"id": "c", "messages": [{"id": "u", "role": "tool", "parts": []}]},
        {"id": "c", "messages": [{"id": "u", "role": "user", "content": "hi", "parts": []}]},
        chat_body(user("hi"), temperature=3),
    ],
)
async def test_malformed_chat_bodies_are_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/ui/chat", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_request"


@pytest.mark.parametrize(
    "body", [{}, {"prompt": 5}, {"prompt": "hi", "messages": []}, {"prompt": "hi", "id": "x"}]
)
async def test_malformed_completion_bodies_are_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/ui/completion", json=body)
    assert response.status_code == 422, response.text


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/chat", json=chat_body(user("x" * 30_000)))
    assert response.status_code == 413


async def test_routes_need_the_key_when_keys_are_configured() -> None:
    import hashlib

    digest = hashlib.sha256(CANARY_KEY.encode()).hexdigest()
    settings = settings_from(FAST_FAKE + f"[keys.app]\nsha256 = '{digest}'\n")
    async with app_client(settings) as (http, _):
        for path, body in [("/ui/chat", chat_body()), ("/ui/completion", {"prompt": "hi"})]:
            assert (await http.post(path, json=body)).status_code == 401
            keyed = await http.post(path, json=body, headers={"X-API-Key": CANARY_KEY})
            assert keyed.status_code == 200
        assert (await http.get("/ui/chat/chat-1/stream")).status_code == 401


async def test_resume_after_the_end_is_204(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/ui/chat", json=chat_body())
    response = await client.get("/ui/chat/chat-1/stream")
    assert response.status_code == 204
    assert response.content == b""


def test_error_text_is_short_and_hides_key_shaped_strings() -> None:
    text = error_text("upstream_unavailable", f"bad key {CANARY_KEY} " + "x" * 1000)
    assert CANARY_KEY not in text and "[redacted]" in text
    assert len(text) <= 300 and text.startswith("upstream_unavailable: bad key")


@pytest.mark.parametrize("text", ["", "plain", 'quo"te\\', "line\nbreak\u2028", "😀 中文 \x00"])
def test_delta_frames_are_json_events(text: str) -> None:
    frame = delta_frame(text)
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert frame.count(b"\n") == 2  # one line: no raw newline can split the event
    assert orjson.loads(frame[6:]) == {"type": "text-delta", "id": "text-0", "delta": text}


# ---- hostile bodies: always a 4xx in the error envelope, never a 5xx -------------------------

PART_TYPES = ["text", "step-start", "file", "reasoning", "tool-x", "data-y", ""]
parts = st.fixed_dictionaries(
    {"type": st.sampled_from(PART_TYPES) | st.text(max_size=8)},
    optional={"text": json_values, "state": json_values, "providerMetadata": json_values},
)
messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool"]) | json_values},
    optional={"id": json_values, "parts": st.lists(parts, max_size=4) | json_values},
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=10) | json_values,
        "messages": st.lists(messages, max_size=4) | json_values,
        "trigger": st.sampled_from(["submit-message", "regenerate-message"]) | json_values,
        "messageId": json_values,
        "model": st.sampled_from(["story", "broken", "nope"]) | json_values,
        "system": json_values,
        "max_tokens": json_values,
        "stop": json_values,
        "prompt": json_values,
    },
)


@FUZZ
@given(body=chat_bodies, path=st.sampled_from(["/ui/chat", "/ui/completion"]))
async def test_fuzzed_ui_bodies_get_4xx_not_5xx(
    client: httpx.AsyncClient, body: dict[str, Any], path: str
) -> None:
    check(await client.post(path, content=json.dumps(body).encode()), path)


@FUZZ
@given(raw=st.binary(max_size=200))
async def test_fuzzed_raw_bytes_get_4xx_not_5xx(client: httpx.AsyncClient, raw: bytes) -> None:
    for path in ("/ui/chat", "/ui/completion"):
        check(await client.post(path, content=raw), path)


@FUZZ
@given(chat_id=st.text(max_size=40), verb=st.sampled_from(["stream", "stop"]))
async def test_fuzzed_chat_ids_on_resume_and_stop_are_never_5xx(
    client: httpx.AsyncClient, chat_id: str, verb: str
) -> None:
    path = f"/ui/chat/{quote(chat_id, safe='')}/{verb}"
    if verb == "stream":
        response = await client.get(path)
        assert response.status_code in (204, 404), response.text
    else:
        response = await client.post(path)
        assert response.status_code in (404, 405), response.text


async def test_tools_and_tool_parts_reach_the_upstream_as_parts(
    client: httpx.AsyncClient, recording: RecordingProvider
) -> None:
    answer = {
        "id": "a1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {
                "type": "tool-weather",
                "toolCallId": "call_1",
                "state": "output-error",
                "input": {"city": "Paris"},
                "errorText": "no network",
            },
        ],
    }
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = {"weather": {"description": "The weather", "inputSchema": schema}}
    response = await client.post(
        "/ui/chat", json=chat_body(user("weather?"), answer, model="recorded", tools=tools)
    )
    assert response.status_code == 200
    (sent,) = recording.requests
    assert [(tool.name, tool.parameters) for tool in sent.tools] == [("weather", schema)]
    assert sent.messages[1].content == (ToolCall("call_1", "weather", '{"city":"Paris"}'),)
    assert sent.messages[2].content == (
        ToolResult("call_1", "no network", is_error=True, name="weather"),
    )
