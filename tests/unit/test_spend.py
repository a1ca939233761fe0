"""The pure parts of issue 30: spend arithmetic, UTC budget periods, the configuration of
prices, budgets and tracing, and when tracing turns on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.models import Attempt
from gateway.providers.base import ChatMessage, ChatRequest, Usage
from gateway.settings import ConfigError, PriceConfig, TracingConfig
from gateway.spend import Price, period_of, spend_of
from gateway.tracing import build_tracing, tracing_enabled
from tests.conftest import settings_from

PRICED = Attempt("m", None, "u", price=Price(2.0, 8.0, 0.5))  # type: ignore[arg-type]


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_cost_prices_cached_input_apart() -> None:
    spend = spend_of(PRICED, Usage(1000, 100, 400), None, deltas=7)
    assert spend is not None
    assert spend.cost == (600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1_000_000
    assert (spend.input_tokens, spend.output_tokens, spend.cached_tokens) == (1000, 100, 400)
    assert not spend.estimated
    assert spend.nano == 2_200_000  # 0.0022 in nano-units


def test_unreported_usage_is_estimated_from_the_prompt_and_the_deltas() -> None:
    request = ChatRequest("u", (ChatMessage("user", "a" * 10),), system="b" * 7)
    spend = spend_of(PRICED, None, request, deltas=5)
    assert spend is not None and spend.estimated
    assert (spend.input_tokens, spend.output_tokens) == (5, 5)  # ceil(17 / 4), one per delta
    half = spend_of(PRICED, Usage(3, None), request, deltas=9)
    assert half is not None and half.estimated
    assert (half.input_tokens, half.output_tokens) == (3, 9)


def test_no_price_no_spend_and_cached_input_defaults_to_the_input_price() -> None:
    assert spend_of(Attempt("m", None, "u"), Usage(1, 1), None, 1) is None  # type: ignore[arg-type]
    price = Price.of(PriceConfig(input_per_mtok=3, output_per_mtok=15))
    assert price == Price(3, 15, 3)


@pytest.mark.parametrize(
    ("now", "period", "name", "left"),
    [
        ("2026-12-06T22:00:00", "day", "2026-12-06", 7200),
        ("2026-12-31T23:59:59", "day", "2026-12-31", 1),
        ("2026-12-31T23:00:00", "month", "2026-12", 3600),  # into the next year
        ("2026-02-28T00:00:00", "month", "2026-02", 86_400),
        ("2026-03-01T00:00:00", "month", "2026-03", 31 * 86_400),
    ],
)
def test_budget_periods_are_utc_days_and_months(
    now: str, period: str, name: str, left: float
) -> None:
    assert period_of(at(now), period) == (name, left)


def test_prices_and_budgets_are_validated_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match=r"models\.m\.price\.output_per_mtok"):
        settings_from("[models.m]\nprovider='fake'\nprice={input_per_mtok=1}\n")
    with pytest.raises(ConfigError, match=r"keys\.k\.budget_period"):
        settings_from(f"[keys.k]\nsha256='{'a' * 64}'\nbudget=5\nbudget_period='week'\n")
    with pytest.raises(ConfigError, match=r"tracing\.protocol"):
        settings_from("[tracing]\nprotocol='grpc'\n")


def test_tracing_is_off_unless_an_endpoint_or_the_otlp_exporter_is_named() -> None:
    table = TracingConfig(endpoint="http://127.0.0.1:4318")
    none = TracingConfig()
    assert not tracing_enabled(none, {})
    assert tracing_enabled(table, {})
    assert tracing_enabled(none, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing_enabled(none, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing_enabled(
        none, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert not tracing_enabled(table, {"OTEL_SDK_DISABLED": "true"})
    assert build_tracing(none, {}) is None


def test_the_table_wins_over_the_otel_variables() -> None:
    config = TracingConfig(endpoint="http://127.0.0.1:9/", sample_ratio=0.0)
    tracing = build_tracing(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://elsewhere:4318"})
    assert tracing is not None
    try:
        processor = tracing.provider._active_span_processor._span_processors[0]
        exporter = processor._batch_processor._exporter  # type: ignore[attr-defined]
        assert exporter._endpoint == "http://127.0.0.1:9/v1/traces"
        span = tracing.tracer.start_span("x")
        assert not span.is_recording()  # sample_ratio = 0 samples nothing
        span.end()
    finally:
        tracing.shutdown()
