"""No stream outlives its client, whatever the gateway was awaiting when the client left.

The leak this pins (issue 28): a resumable stream is admitted and primed, then the gateway
awaits Redis to create the stream's log. A client that hung up during that await used to
leave the stream counted forever: `gateway_active_streams` stayed raised, the key's
concurrency slot stayed held, the shutdown drain waited its whole grace for it, the upstream
stayed open and the request was logged `complete`. Here Redis answers only when the test lets
it (a proxy in front of a real redis-server), and the client leaves while it waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.auth import hash_key
from tests.conftest import settings_from
from tests.e2e.conftest import GatedProvider, RequestsLogged, wait_for
from tests.e2e.servers import serve
from tests.e2e.slow_redis import slow_redis

pytestmark = pytest.mark.e2e

KEY = "gw-leak-key-0123456789"
STREAM = {"prompt": "x", "resumable": True}
UI_CHAT = {
    "id": "chat-1",
    "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "x"}]}],
}
# (method, path, body or query): every way a client starts a stream that awaits Redis
# between admission and its response.
STARTS = {
    "post_stream": ("POST", "/stream?format=sse", STREAM),
    "get_stream": ("GET", "/stream?prompt=x&format=sse&resumable=true", None),
    "ui_chat": ("POST", "/ui/chat", UI_CHAT),
}


def config(redis_url: str) -> str:
    return (
        f"redis_url = '{redis_url}'\nredis_timeout_s = 30\n"
        "[providers.fake]\ntype = 'fake'\nchunk_delay_ms = 0\n"
        f"[keys.frontend]\nsha256 = '{hash_key(KEY)}'\nmax_concurrent_streams = 1\n"
    )


def raw_request(method: str, path: str, body: Any) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


@contextmanager
def request_lines() -> Iterator[list[dict[str, Any]]]:
    """The fields of every per-request log line."""
    lines: list[dict[str, Any]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "request":
                lines.append(dict(getattr(record, "fields", {})))

    handler, logger = Capture(), logging.getLogger("gateway.access")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def sample(metrics: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics):
        for each in family.samples:
            if each.name == name and each.labels == labels:
                return float(each.value)
    raise AssertionError(f"no {name} {labels}")


@pytest.mark.parametrize("start", STARTS, ids=str)
async def test_a_client_leaving_while_redis_answers_leaves_nothing_behind(
    start: str, redis_url: str
) -> None:
    method, path, body = STARTS[start]
    upstream = GatedProvider(("one ", "two "))
    upstream.gates[0].set()  # the first delta: the stream is primed, then Redis is awaited
    async with slow_redis(redis_url, watch=b"gw:s:{") as redis:
        app = create_app(settings_from(config(redis.url)), {"fake": upstream})
        with RequestsLogged() as logged, request_lines() as lines:
            async with serve(app) as url:
                host, port = url.removeprefix("http://").split(":")
                _, writer = await asyncio.open_connection(host, int(port))
                writer.write(raw_request(method, path, body))
                await writer.drain()
                await wait_for(redis.asked)  # the gateway waits for Redis to create the log
                writer.close()  # the client hangs up meanwhile
                await logged.reach(1)
                redis.release()
                await wait_for(upstream.closed)  # the upstream request was closed
                async with httpx.AsyncClient(base_url=url) as http:
                    auth = {"Authorization": f"Bearer {KEY}"}
                    metrics = (await http.get("/metrics", headers=auth)).text
                    upstream.gates[1].set()
                    again = await http.post("/stream", json={"prompt": "x"}, headers=auth)
                drain = app.state.gateway.drain
                assert drain.active == set()  # SIGTERM would not wait for a ghost
                assert app.state.ui_chats.local == {}  # no chat names a stream that never ran
                assert sample(metrics, "gateway_active_streams") == 0
                route = path.split("?")[0]
                assert sample(metrics, "gateway_client_disconnects_total", route=route) == 1
                assert again.status_code == 200, again.text  # the key's slot came back
    assert lines[0]["outcome"] == "client_disconnect"
    assert lines[0]["status"] == 499
