"""Metrics and the per-request JSON log line, as streams complete, fail, time out and are
abandoned; a canary provider key never appears in a log line."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.observability import Redactor, configure_logging
from tests.conftest import CANARY_KEY, FAST_FAKE, settings_from, write_config
from tests.e2e.conftest import GatedProvider, wait_for
from tests.e2e.process import gateway_process
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

CONFIG = (
    FAST_FAKE
    + f"""
[providers.openai]
type = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "{CANARY_KEY}"
connect_timeout = 0.5
[models.flaky]
provider = "fake"
params = {{ fail_after_chunks = 2 }}
[models.slow]
provider = "slowfake"
params = {{ first_chunk_delay_ms = 60000 }}
[providers.slowfake]
type = "fake"
first_token_timeout = 0.05
[models.rescued]
provider = "fake"
params = {{ fail_status = 503 }}
fallbacks = ["story"]
"""
)


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[list[dict[str, object]]]:
    """Every JSON log line the gateway writes during the test, parsed."""
    configure_logging("info", "json", [CANARY_KEY])
    lines: list[dict[str, object]] = []
    yield lines
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


def read_logs(capsys: pytest.CaptureFixture[str], into: list[dict[str, object]]) -> str:
    err = capsys.readouterr().err
    into.extend(json.loads(line) for line in err.splitlines() if line.startswith("{"))
    return err


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_and_logs_follow_every_ending(
    json_logs: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    provider = GatedProvider(("a ", "b "))
    app = create_app(settings_from(CONFIG), {"gated": provider})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        ok = await http.post("/stream", json={"prompt": "x"})
        assert ok.status_code == 200
        await http.post("/stream?format=sse", json={"prompt": "x", "model": "flaky"})
        slow = await http.post("/stream", json={"prompt": "x", "model": "slow"})
        assert slow.status_code == 504
        down = await http.post("/stream", json={"prompt": "x", "model": "openai/gpt"})
        assert down.status_code == 502
        assert (await http.post("/stream", json={"prompt": "x", "model": "rescued"})).is_success
        assert (
            await http.post("/stream", json={"model": "nope", "prompt": "x"})
        ).status_code == 404
        text = (await http.get("/metrics")).text
    found = samples(text)
    requests = "gateway_requests_total"
    assert (
        value(
            found,
            requests,
            route="/stream",
            model="story",
            provider="fake",
            outcome="complete",
            type="",
        )
        == 2
    )
    assert (
        value(
            found,
            requests,
            route="/stream",
            model="flaky",
            provider="fake",
            outcome="upstream_error",
            type="upstream_unavailable",
        )
        == 1
    )
    rejected = {"route": "/stream", "model": "", "provider": ""}
    assert value(found, requests, **rejected, outcome="timeout", type="upstream_timeout") == 1
    assert value(found, requests, **rejected, outcome="rejected", type="unknown_model") == 1
    assert not [name for name, _ in found if name.endswith("_created")]
    errors = "gateway_upstream_errors_total"
    assert value(found, errors, provider="fake", type="upstream_unavailable") == 2
    assert value(found, errors, provider="slowfake", type="upstream_timeout") == 1
    assert value(found, errors, provider="openai", type="upstream_unavailable") == 1
    assert value(found, "gateway_fallbacks_total", model="rescued", served_by="story") == 1
    assert value(found, "gateway_deltas_total", model="flaky", provider="fake") == 2
    assert (
        value(
            found, "gateway_usage_tokens_total", model="story", provider="fake", kind="completion"
        )
        > 0
    )
    assert value(found, "gateway_bytes_out_total", model="story", provider="fake") > 1000
    assert (
        value(found, "gateway_time_to_first_delta_seconds_count", model="story", provider="fake")
        == 2
    )
    assert value(found, "gateway_active_streams") == 0

    err = read_logs(capsys, json_logs)
    assert CANARY_KEY not in err
    requests_logged = [
        line for line in json_logs if line["message"] == "request" and line["route"] == "/stream"
    ]
    by_outcome = {line["outcome"]: line for line in requests_logged}
    assert set(by_outcome) >= {"complete", "upstream_error", "timeout", "rejected"}
    complete = by_outcome["complete"]
    assert complete["status"] == 200
    assert complete["model"] == "story"
    assert complete["deltas"] > 0 and complete["bytes_out"] > 0
    assert complete["time_to_first_delta_ms"] is not None
    assert complete["usage"]["completion_tokens"] > 0  # type: ignore[index]
    assert len(str(complete["request_id"])) == 32
    assert by_outcome["timeout"]["status"] == 504
    assert by_outcome["timeout"]["error_type"] == "upstream_timeout"
    assert by_outcome["upstream_error"]["error_type"] == "upstream_unavailable"
    started = [line for line in json_logs if line["message"] == "stream started"]
    # Only the streams that started: not the time-out, the 502 or the unknown model.
    assert [(line["model"], line["provider"]) for line in started] == [
        ("story", "fake"),
        ("flaky", "fake"),
        ("story", "fake"),  # "rescued", served by its fallback
    ]
    assert by_outcome["rejected"]["requested_model"] == "nope"
    assert complete["requested_model"] is None


async def test_abandoned_stream_is_counted_and_logged(
    json_logs: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    provider = GatedProvider()
    app = create_app(settings_from(FAST_FAKE), {"fake": provider})
    provider.gates[0].set()
    ended = asyncio.Event()

    class StreamEnded(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "fields", {}).get("route") == "/stream":
                ended.set()

    handler = StreamEnded()
    logging.getLogger("gateway.access").addHandler(handler)
    try:
        await _abandon(app, provider, ended)
    finally:
        logging.getLogger("gateway.access").removeHandler(handler)
    read_logs(capsys, json_logs)
    line = next(
        entry
        for entry in json_logs
        if entry.get("route") == "/stream" and entry["message"] == "request"
    )
    assert line["outcome"] == "client_disconnect"


async def _abandon(app: object, provider: GatedProvider, ended: asyncio.Event) -> None:
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/stream", params={"prompt": "a"}) as response:
            await anext(response.aiter_raw())
        await wait_for(provider.closed)
        await wait_for(ended)  # the request's own log line: written once it fully unwound
        found = samples((await http.get("/metrics")).text)
    assert value(found, "gateway_client_disconnects_total", route="/stream") == 1
    assert value(found, "gateway_active_streams") == 0


def test_redaction_covers_headers_urls_key_shapes_and_configured_secrets() -> None:
    redact = Redactor(["my-own-secret-value"])
    cases = {
        "authorization: Bearer abc.def": "authorization: [redacted]",
        "{'x-api-key': 'hunter22'}": "{'x-api-key': '[redacted]'}",
        '"x-goog-api-key": "AIzaSyAbcdefgh"': '"x-goog-api-key": "[redacted]"',
        "GET /v1?key=AIzaSyAbc123&alt=sse": "GET /v1?key=[redacted]&alt=sse",
        "failed with sk-proj-ABCDEF123456": "failed with [redacted]",
        "value my-own-secret-value here": "value [redacted] here",
    }
    for raw, expected in cases.items():
        assert redact(raw) == expected


async def test_multi_worker_metrics_count_every_request(tmp_path: Path) -> None:
    config = write_config(tmp_path, FAST_FAKE)
    # With workers, uvicorn logs the configured port, not the bound one: choose it here.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with gateway_process("--workers", "2", "--port", str(port), config=config) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            for _ in range(6):
                assert (await http.post("/stream", json={"prompt": "x"})).status_code == 200
            scrapes = [samples((await http.get("/metrics")).text) for _ in range(4)]
    for found in scrapes:  # whichever worker answered
        assert (
            value(
                found,
                "gateway_requests_total",
                route="/stream",
                model="story",
                provider="fake",
                outcome="complete",
                type="",
            )
            == 6
        )


def test_text_logs_show_usage_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text", [])
    try:
        fields = {"route": "/stream", "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
        logging.getLogger("gateway.access").info("request", extra={"fields": fields})
    finally:
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
    line = capsys.readouterr().err.strip()
    assert line.endswith('route=/stream usage={"prompt_tokens":1,"completion_tokens":2}')
