"""The official OpenAI SDK as the client, against a live gateway on a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import openai
import pytest

from gateway.app import create_app
from gateway.providers.fake import load_story
from tests.conftest import FAST_FAKE, settings_from, wire
from tests.e2e.servers import Reply, UpstreamStub, serve
from tests.e2e.test_providers import CAPTURES, gateway_settings

pytestmark = pytest.mark.e2e

STORY = load_story(None)
FAULTS = FAST_FAKE + "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=3}\n"
MESSAGES = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]


def sdk_client(url: str) -> openai.AsyncOpenAI:
    """The official SDK pointed at a gateway (no gateway keys configured, no retries)."""
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


@asynccontextmanager
async def sdk_against(kind: str) -> AsyncIterator[tuple[openai.AsyncOpenAI, UpstreamStub]]:
    """The SDK, a live gateway, and behind it a stub speaking `kind`'s recorded stream."""
    capture, content_type, _ = CAPTURES[kind]
    stub = UpstreamStub(Reply(content_type=content_type, body=[wire(capture)]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings(kind, upstream)))
        async with serve(app) as url:
            async with sdk_client(url) as client:
                yield client, stub


@pytest.fixture
async def sdk() -> AsyncIterator[openai.AsyncOpenAI]:
    async with serve(create_app(settings_from(FAULTS))) as url:
        async with sdk_client(url) as client:
            yield client


async def test_sdk_streaming_with_usage(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="story",
        messages=MESSAGES,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == STORY
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {chunks[0].id}


async def test_sdk_streaming_without_usage_has_no_usage_chunk(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="story",
        messages=MESSAGES,
        stream=True,  # type: ignore[arg-type]
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == STORY
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [c.usage for c in chunks] == [None] * len(chunks)  # no usage chunk, no usage


async def test_sdk_non_streaming(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="story",
        messages=MESSAGES,
        max_completion_tokens=500,  # more than the story: it ends on its own
        seed=1,  # type: ignore[arg-type]
    )
    assert completion.choices[0].message.content == STORY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.model == "story"


async def test_sdk_models_list(sdk: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in sdk.models.list()]
    assert set(models) == {"story", "flaky"}


async def test_sdk_unknown_model_is_not_found(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "unknown_model"


async def test_sdk_mid_stream_failure_raises(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="flaky",
        messages=MESSAGES,
        stream=True,  # type: ignore[arg-type]
    )
    received = []
    with pytest.raises(openai.APIError, match="scripted failure"):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 4  # the role chunk and three deltas, then the error


async def test_sdk_mid_stream_failure_without_streaming_is_an_error_status(
    sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="flaky", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 502


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"n": 2}, "n > 1"),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools.0.type"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "schema"),
        ({"logprobs": True}, "logprobs"),
    ],
)
async def test_sdk_unsupported_features_are_a_400(
    sdk: openai.AsyncOpenAI, fields: dict[str, object], needle: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=needle):
        await sdk.chat.completions.create(model="story", messages=MESSAGES, **fields)  # type: ignore[call-overload]


async def test_sdk_image_url_the_gateway_would_fetch_is_a_400(sdk: openai.AsyncOpenAI) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}},
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError, match="only data URLs and https URLs"):
        await sdk.chat.completions.create(model="story", messages=messages)  # type: ignore[arg-type]


# An OpenAI upstream without streaming takes the native path, whose upstream answers JSON
# (tests/e2e/test_native.py); these stubs replay recorded streams.
@pytest.mark.parametrize(
    ("kind", "stream"),
    [(kind, stream) for kind in CAPTURES for stream in (True, False) if stream or kind != "openai"],
)
async def test_sdk_against_each_real_dialect(kind: str, stream: bool) -> None:
    expected = CAPTURES[kind][2]
    async with sdk_against(kind) as (client, _):
        if stream:
            chunks = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )
            parts = [c async for c in chunks]
            text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
            usage = parts[-1].usage
        else:
            completion = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,  # type: ignore[arg-type]
            )
            text = completion.choices[0].message.content or ""
            usage = completion.usage
    assert text == expected
    assert usage is not None and usage.prompt_tokens


@pytest.mark.parametrize(("kind", "passed"), [("openai", True), ("anthropic", False)])
async def test_openai_only_hints_reach_only_openai_compatible_upstreams(
    kind: str, passed: bool
) -> None:
    async with sdk_against(kind) as (client, stub):
        chunks = await client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            seed=7,
            presence_penalty=0.5,  # type: ignore[arg-type]
            user="u-1",
            max_completion_tokens=9,
            stream=True,
        )
        _ = [chunk async for chunk in chunks]
    import json

    sent = json.loads(stub.seen[0].body)
    assert ("seed" in sent and sent["presence_penalty"] == 0.5) is passed
    if kind == "openai":  # the native path: the client's own spelling, as sent
        assert sent["max_completion_tokens"] == 9 and "max_tokens" not in sent
    else:  # translated: in the upstream dialect's spelling
        assert sent["max_tokens"] == 9
