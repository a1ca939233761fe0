"""The official openai Node SDK's `responses.stream` / `responses.create` through the gateway
(SPEC §4.10), on a scripted Responses upstream (native) and a Chat Completions upstream
(translated): text, a function tool loop over `previous_response_id`, a failure mid-stream,
another key's id. Node runs tests/ui_sdk/responses.mjs (`make test` installs its pinned
packages with `npm ci`)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests.conftest import settings_from, wire
from tests.e2e.conftest import GUARD_S
from tests.e2e.servers import Break, Reply, UpstreamStub, serve
from tests.e2e.test_codex import text_answer
from tests.e2e.test_responses_native import KEY_A, KEY_B
from tests.e2e.test_responses_native import config as native_config
from tests.e2e.test_responses_sdk import weather_call, whole
from tests.e2e.test_responses_translated import chat_call
from tests.e2e.test_responses_translated import config as translated_config

pytestmark = pytest.mark.e2e

UI_SDK = Path(__file__).parents[1] / "ui_sdk"
NODE = shutil.which("node")
TEXT = "The file is written."  # text_answer's, as test_codex scripts it
CHAT_TEXT = "The quick 😀 fox 中文 line\u2028sep nel\u0085!"  # openai/basic.sse's


async def run_node(**request: Any) -> Any:
    if NODE is None:
        pytest.fail("the Node SDK tests need Node.js (apt-get install nodejs npm)")
    if not (UI_SDK / "node_modules" / "openai").is_dir():
        pytest.fail(
            "the openai Node SDK is not installed: run `make test` (npm ci in tests/ui_sdk)"
        )
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(UI_SDK / "responses.mjs"),
        json.dumps(request),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=UI_SDK,
    )
    async with asyncio.timeout(GUARD_S):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def scenario(
    kind: str, name: str, *replies: Reply, **request: Any
) -> tuple[Any, UpstreamStub]:
    stub = UpstreamStub(*replies)
    async with serve(stub) as upstream:
        toml = (
            native_config(upstream, keys=True)
            if kind == "native"
            else translated_config("openai", upstream, keys=True)
        )
        async with serve(create_app(settings_from(toml))) as url:
            result = await run_node(url=url, key=KEY_A, scenario=name, **request)
    return result, stub


@pytest.mark.parametrize("kind", ["native", "translated"])
async def test_text(kind: str) -> None:
    reply = text_answer(TEXT) if kind == "native" else wire("openai/basic.sse")
    result, _ = await scenario(kind, "text", Reply(body=[reply]))
    expected = TEXT if kind == "native" else CHAT_TEXT
    assert "".join(result["deltas"]) == result["text"] == expected
    assert result["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("kind", ["native", "translated"])
async def test_a_function_tool_loop(kind: str) -> None:
    if kind == "native":
        replies = (whole(weather_call()), whole(text_answer(TEXT)))
    else:
        call = Reply(body=[chat_call("get_weather", '{"city":"Paris"}')])
        replies = (call, Reply(body=[wire("openai/basic.sse")]))
    result, stub = await scenario(kind, "tools", *replies)
    assert result["call"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert result["text"] == (TEXT if kind == "native" else CHAT_TEXT)
    sent = json.loads(stub.seen[1].body)
    if kind == "native":
        assert sent["previous_response_id"] == "resp_tool"
    else:
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]


@pytest.mark.parametrize("kind", ["native", "translated"])
async def test_a_failure_mid_stream(kind: str) -> None:
    stream = text_answer(TEXT) if kind == "native" else wire("openai/basic.sse")
    head = stream[: len(stream) // 2]
    head = head[: head.rindex(b"\n\n") + 2]
    result, _ = await scenario(kind, "failure", Reply(body=[head, Break()]))
    assert result["types"][0] == "response.created"
    assert result["types"][-1] == "response.failed"
    assert "response.completed" not in result["types"]


@pytest.mark.parametrize("kind", ["native", "translated"])
async def test_another_keys_id(kind: str) -> None:
    reply = text_answer(TEXT) if kind == "native" else wire("openai/basic.sse")
    stub = UpstreamStub(Reply(body=[reply]))
    async with serve(stub) as upstream:
        toml = (
            native_config(upstream, keys=True)
            if kind == "native"
            else translated_config("openai", upstream, keys=True)
        )
        async with serve(create_app(settings_from(toml))) as url:
            made = await run_node(url=url, key=KEY_A, scenario="text")
            assert made["text"]
            previous = "resp_text" if kind == "native" else await _last_id(url)
            before = len(stub.seen)
            result = await run_node(
                url=url, key=KEY_A, other_key=KEY_B, scenario="foreign", previous=previous
            )
    assert result == {
        "raised": True,
        "status": 400,
        "code": "previous_response_not_found",
        "param": "previous_response_id",
    }
    assert len(stub.seen) == before  # the refused request never reached the upstream


async def _last_id(url: str) -> str:
    """A translated response's id: made here with key A (the Node run's is not printed)."""
    import httpx

    async with httpx.AsyncClient(headers={"authorization": f"Bearer {KEY_A}"}) as http:
        response = await http.post(url + "/v1/responses", json={"model": "m", "input": "x"})
    response_id: str = response.json()["id"]
    return response_id
