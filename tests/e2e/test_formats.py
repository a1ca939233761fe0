"""/stream's SSE and NDJSON read back by independent parsers, on a real socket."""

from __future__ import annotations

import json

import httpx
import pytest
from httpx_sse import aconnect_sse

from gateway.app import create_app
from gateway.providers.fake import load_story
from tests.conftest import settings_from
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

STORY = load_story(None)
CHAR_FAKE = "[providers.fake]\ntype='fake'\nchunk_delay_ms=0\nchunking='char'\n"
FLAKY = "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=40}\n"


async def test_sse_parsed_by_httpx_sse_reproduces_the_text_and_done() -> None:

    async with serve(create_app(settings_from(CHAR_FAKE))) as url, httpx.AsyncClient() as http:
        async with aconnect_sse(http, "GET", f"{url}/stream", params={"prompt": "a"}) as source:
            events = [event async for event in source.aiter_sse()]
    *deltas, done = events
    assert "".join(json.loads(e.data) for e in deltas) == STORY
    assert all(e.event == "message" for e in deltas)
    ids = [e.id for e in events]
    stream_id = ids[0].split(":")[0]
    assert ids == [f"{stream_id}:{n}" for n in range(len(events))]
    assert done.event == "done"
    assert json.loads(done.data) == {
        "finish_reason": "stop",
        "usage": {
            "prompt_tokens": 1,
            "completion_tokens": len(STORY),
            "total_tokens": len(STORY) + 1,
        },
        "model": "story",
        "provider": "fake",
    }


async def test_sse_error_event_parsed_by_httpx_sse() -> None:

    async with (
        serve(create_app(settings_from(CHAR_FAKE + FLAKY))) as url,
        httpx.AsyncClient() as http,
    ):
        params = {"prompt": "a", "model": "flaky"}
        async with aconnect_sse(http, "GET", f"{url}/stream", params=params) as source:
            events = [event async for event in source.aiter_sse()]
    assert [e.event for e in events[-2:]] == ["message", "error"]
    assert "".join(json.loads(e.data) for e in events[:-1]) == STORY[:40]
    assert json.loads(events[-1].data)["type"] == "upstream_unavailable"


async def test_ndjson_read_line_by_line_reproduces_the_text() -> None:

    async with serve(create_app(settings_from(CHAR_FAKE))) as url, httpx.AsyncClient() as http:
        async with http.stream("GET", f"{url}/stream?prompt=a&format=ndjson") as response:
            lines = [json.loads(line) async for line in response.aiter_lines() if line]
    *deltas, done = lines
    assert "".join(d["text"] for d in deltas) == STORY
    # The fake reports one prompt token per word and one completion token per chunk.
    usage = {"prompt_tokens": 1, "completion_tokens": len(STORY), "total_tokens": len(STORY) + 1}
    assert done == {
        "done": True,
        "finish_reason": "stop",
        "usage": usage,
        "model": "story",
        "provider": "fake",
    }
