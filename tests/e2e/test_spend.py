"""SPEC §7 spend and budgets on real sockets: spend = usage x price exactly, in the metrics and
the log line (estimated, and said so, when the upstream reports no usage); a budget crossed by
a stream lets every stream in flight finish and refuses the key's next request with 429
`budget_exceeded` in each dialect's envelope, until the period resets (a manual clock, no
waiting); with Redis, two replicas share the spend."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import hash_key
from tests.conftest import CANARY_KEY, REDIS_SLACK, ManualClock, settings_from
from tests.e2e.conftest import RequestsLogged
from tests.e2e.servers import Gate, Reply, UpstreamStub, serve

pytestmark = pytest.mark.e2e

KEY = "gw-spend-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PRICE = "price = { input_per_mtok = 3.0, output_per_mtok = 15.0, cached_input_per_mtok = 0.3 }"
USAGE = (
    b'{"prompt_tokens":1000,"completion_tokens":250,"prompt_tokens_details":{"cached_tokens":200}}'
)
COST = (800 * 3.0 + 200 * 0.3 + 250 * 15.0) / 1_000_000  # 0.00621
# ManualClock starts at 08:00:30 UTC: the day's budget period resets 15:59:30 later.
UNTIL_MIDNIGHT_S = 86_400 - (8 * 3600 + 30)


def chunk(text: str) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":%b}}]}\n\n' % json.dumps(text).encode()


def end(usage: bytes | None = USAGE) -> bytes:
    finish = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    reported = b'data: {"choices":[],"usage":%b}\n\n' % usage if usage else b""
    return finish + reported + b"data: [DONE]\n\n"


def config(upstream: str, key: str = "", redis_url: str | None = None) -> str:
    return (
        (f"redis_url = '{redis_url}'\n{REDIS_SLACK}" if redis_url else "")
        + f"[providers.up]\ntype = 'openai'\nbase_url = '{upstream}/v1'\napi_key = '{CANARY_KEY}'\n"
        + f"[models.priced]\nprovider = 'up'\nmodel = 'm'\n{PRICE}\n"
        + "[models.free]\nprovider = 'up'\nmodel = 'm'\n"
        + f"[keys.web]\nsha256 = '{hash_key(KEY)}'\n{key}"
    )


def spend_metric(text: str, key: str, model: str) -> float | None:
    prefix = f'gateway_spend_total{{key="{key}",model="{model}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def logged_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        record.fields  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "gateway.access" and record.getMessage() == "request"
    ]


async def test_spend_is_usage_times_price_in_the_metrics_and_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway.access")
    stub = UpstreamStub(Reply(body=[chunk("hi"), end()]))
    with RequestsLogged() as logged:
        async with serve(stub) as upstream:
            app = create_app(settings_from(config(upstream)))
            async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as http:
                for _ in range(2):
                    await http.post("/stream", json={"prompt": "x", "model": "priced"})
                await http.post("/stream", json={"prompt": "x", "model": "free"})
                await logged.reach(3)
                metrics = (await http.get("/metrics")).text
    assert spend_metric(metrics, "web", "priced") == COST + COST
    assert spend_metric(metrics, "web", "free") is None  # no price, no spend
    first, _, free = logged_fields(caplog)[:3]
    assert (first["spend"], first["spend_estimated"]) == (COST, False)
    assert free["spend"] is None


async def test_unreported_usage_is_estimated_and_the_log_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway.access")
    stub = UpstreamStub(Reply(body=[chunk("one"), chunk(" two"), end(None)]))
    prompt = "x" * 41  # 11 tokens at four characters each, rounded up
    with RequestsLogged() as logged:
        async with serve(stub) as upstream:
            app = create_app(settings_from(config(upstream)))
            async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as http:
                response = await http.post("/stream", json={"prompt": prompt, "model": "priced"})
                await logged.reach(1)
                metrics = (await http.get("/metrics")).text
    assert response.text == "one two"
    expected = (math.ceil(41 / 4) * 3.0 + 2 * 15.0) / 1_000_000  # two deltas as two tokens
    [fields] = logged_fields(caplog)[:1]
    assert (fields["spend"], fields["spend_estimated"]) == (expected, True)
    assert spend_metric(metrics, "web", "priced") == expected


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_budget_crossed_by_a_stream_refuses_the_next_request_until_the_period_resets(
    store: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    held = Gate()
    stub = UpstreamStub(
        Reply(body=[chunk("held "), held, chunk("to the end"), end()]),
        Reply(body=[chunk("quick"), end()]),
    )
    clock = ManualClock()
    budget = "budget = 0.006\nbudget_period = 'day'\n"  # one stream (0.00621) crosses it
    with RequestsLogged() as logged:
        async with serve(stub) as upstream:
            app = create_app(settings_from(config(upstream, budget, redis_url)), clock=clock)
            async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as http:
                body = {"prompt": "x", "model": "priced"}
                async with http.stream("POST", "/stream", json=body) as in_flight:
                    chunks = in_flight.aiter_text()
                    assert await anext(chunks) == "held "
                    crossing = await http.post("/stream", json=body)
                    await logged.reach(1)
                    refused = await http.post("/stream", json=body)
                    openai = await http.post(
                        "/v1/chat/completions",
                        json={"model": "priced", "messages": [{"role": "user", "content": "x"}]},
                    )
                    anthropic = await http.post(
                        "/v1/messages",
                        json={
                            "model": "priced",
                            "max_tokens": 5,
                            "messages": [{"role": "user", "content": "x"}],
                        },
                    )
                    held.open()
                    rest = "".join([text async for text in chunks])
                await logged.reach(5)
                clock.advance(UNTIL_MIDNIGHT_S - 1)
                still = await http.post("/stream", json=body)
                clock.advance(1)
                reset = await http.post("/stream", json=body)
    assert crossing.text == "quick"
    assert rest == "to the end"  # the stream in flight was not cut
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(UNTIL_MIDNIGHT_S)
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert "budget of 0.006 per day" in error["message"]
    assert openai.status_code == 429
    assert openai.json()["error"]["type"] == "budget_exceeded"
    assert anthropic.status_code == 429
    assert anthropic.json()["error"]["type"] == "rate_limit_error"
    assert anthropic.headers["retry-after"] == str(UNTIL_MIDNIGHT_S)
    assert still.status_code == 429
    assert still.headers["retry-after"] == "1"
    assert reset.status_code == 200 and reset.text == "quick"
    assert len(stub.seen) == 3  # no refused request reached the upstream


async def test_two_replicas_share_the_spend_through_redis(redis_url: str) -> None:
    stub = UpstreamStub(Reply(body=[chunk("hi"), end()]))
    clock = ManualClock()
    budget = "budget = 0.01\nbudget_period = 'month'\n"  # two streams (0.01242) cross it
    with RequestsLogged() as logged:
        async with serve(stub) as upstream:
            settings = settings_from(config(upstream, budget, redis_url))
            one, two = create_app(settings, clock=clock), create_app(settings, clock=clock)
            async with (
                serve(one) as url_one,
                serve(two) as url_two,
                httpx.AsyncClient(headers=AUTH) as http,
            ):
                body = {"prompt": "x", "model": "priced"}
                first = await http.post(f"{url_one}/stream", json=body)
                second = await http.post(f"{url_two}/stream", json=body)
                await logged.reach(2)
                refused_one = await http.post(f"{url_one}/stream", json=body)
                refused_two = await http.post(f"{url_two}/stream", json=body)
                metrics_one = (await http.get(f"{url_one}/metrics")).text
    assert first.status_code == second.status_code == 200
    assert refused_one.status_code == refused_two.status_code == 429
    # The manual clock's month resets on the first of the next month, days away.
    assert int(refused_two.headers["retry-after"]) > UNTIL_MIDNIGHT_S
    assert spend_metric(metrics_one, "web", "priced") == COST  # what this process charged


async def test_redis_down_with_fail_open_still_serves_a_budgeted_key() -> None:
    stub = UpstreamStub(Reply(body=[chunk("hi"), end()]))
    async with serve(stub) as upstream:
        toml = config(upstream, "budget = 1.0\n", "redis://127.0.0.1:1/0")
        app = create_app(settings_from("redis_failure = 'open'\n" + toml))
        async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as http:
            response = await http.post("/stream", json={"prompt": "x", "model": "priced"})
    assert response.status_code == 200
