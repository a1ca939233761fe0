"""Prometheus metrics (prometheus-client), recorded once per request or stream, never per chunk.

Each app has its own registry (no hidden globals; tests stay independent). With several
workers (`gateway serve --workers N`) the CLI sets PROMETHEUS_MULTIPROC_DIR before the workers
start, every worker writes its values there, and /metrics sums them all, so the numbers are
right whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "DeploymentMetrics", "Metrics", "ModelMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# The `_created` series double every counter and histogram and nobody queries them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class ModelMetrics:
    """One served model's series, bound once: `labels()` is a lock, a tuple and a dict lookup
    per call, and a stream made about seven of them."""

    __slots__ = (
        "_duration",
        "bytes_out",
        "completion_tokens",
        "deltas",
        "durations",
        "prompt_tokens",
        "time_to_first_delta",
    )

    def __init__(self, metrics: Metrics, model: str, provider: str) -> None:
        self.time_to_first_delta = metrics.time_to_first_delta.labels(model, provider)
        self.deltas = metrics.deltas.labels(model, provider)
        self.bytes_out = metrics.bytes_out.labels(model, provider)
        self.prompt_tokens = metrics.tokens.labels(model, provider, "prompt")
        self.completion_tokens = metrics.tokens.labels(model, provider, "completion")
        self.durations: dict[str, Histogram] = {}  # by outcome, bound when first seen
        self._duration = partial(metrics.stream_duration.labels, model, provider)

    def stream_duration(self, outcome: str) -> Histogram:
        found = self.durations.get(outcome)
        if found is None:
            found = self.durations[outcome] = self._duration(outcome)
        return found


# Names a client composes (`provider/upstream-model`, SPEC §3) that get series of their own,
# per process; any further one is labelled OTHER_MODEL. A model label is otherwise the
# client's to choose, and every new one was a set of series (and their bound children) kept
# for the process's life: memory and scrape size growing with what clients send.
AD_HOC_MODEL_SERIES = 64
OTHER_MODEL = "other"


class DeploymentMetrics:
    """One configured deployment's series (SPEC §5.3), bound once at start-up. The labels
    come from the configuration only (entry and deployment names): the set is bounded."""

    __slots__ = ("_failures", "cooling", "in_flight", "requests", "time_to_first_token")

    def __init__(self, metrics: Metrics, model: str, deployment: str) -> None:
        self.requests = metrics.deployment_requests.labels(model, deployment)
        self.in_flight = metrics.deployment_in_flight.labels(model, deployment)
        self.cooling = metrics.deployment_cooling.labels(model, deployment)
        self.time_to_first_token = metrics.deployment_ttft.labels(model, deployment)
        self._failures = partial(metrics.deployment_failures.labels, model, deployment)

    def failed(self, error_type: str) -> None:
        self._failures(error_type).inc()


GaugeMode = Literal["livesum", "livemax"]  # how /metrics combines the workers' values


class _Declare:
    """Metric families in one registry, each from its name, help text and label names (gauges
    sum over workers unless told otherwise)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, doc: str, *labels: str) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, *labels: str, mode: GaugeMode = "livesum") -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry, multiprocess_mode=mode)

    def histogram(self, name: str, doc: str, *labels: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)


class Metrics:
    def __init__(self, configured_models: Iterable[str] = ()) -> None:
        self._configured = frozenset(configured_models)  # always labelled as themselves
        self._ad_hoc: set[str] = set()
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        self._requests: dict[tuple[str, str, str, str, str], Counter] = {}
        self._spends: dict[tuple[str, str], Counter] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        declare = _Declare(self.registry)
        self.requests = declare.counter(
            "gateway_requests_total",
            "Requests by route, model, provider, outcome and error type (empty when none). "
            "Requests rejected before a model served have empty model and provider labels: "
            "a requested name is the client's to choose, so never a label.",
            "route",
            "model",
            "provider",
            "outcome",
            "type",
        )
        self.time_to_first_delta = declare.histogram(
            "gateway_time_to_first_delta_seconds",
            "From admission to the first relayed delta.",
            "model",
            "provider",
            buckets=LATENCY_BUCKETS,
        )
        self.stream_duration = declare.histogram(
            "gateway_stream_duration_seconds",
            "From admission to the end of the stream.",
            "model",
            "provider",
            "outcome",
            buckets=DURATION_BUCKETS,
        )
        self.deltas = declare.counter(
            "gateway_deltas_total", "Text deltas relayed.", "model", "provider"
        )
        self.bytes_out = declare.counter(
            "gateway_bytes_out_total",
            "Body bytes written to clients by streams.",
            "model",
            "provider",
        )
        self.tokens = declare.counter(
            "gateway_usage_tokens_total",
            "Tokens the providers reported.",
            "model",
            "provider",
            "kind",
        )
        self.active_streams = declare.gauge(
            "gateway_active_streams", "Streams admitted and not yet ended."
        )
        self.upstream_errors = declare.counter(
            "gateway_upstream_errors_total",
            "Upstream failures by provider and type.",
            "provider",
            "type",
        )
        self.fallbacks = declare.counter(
            "gateway_fallbacks_total", "Requests served by a fallback entry.", "model", "served_by"
        )
        self.rate_limited = declare.counter(
            "gateway_rate_limited_total", "Requests refused by a key's limits.", "key"
        )
        self.redis_failures = declare.counter(
            "gateway_limit_store_failures_total",
            "Calls to the limit store (Redis) that failed or timed out.",
        )
        self.spend = declare.counter(
            "gateway_spend",
            "What streams cost by key and served model, from the usage and the configured "
            'prices (currency units; estimated usage included). Key "": an open gateway.',
            "key",
            "model",
        )
        self.client_disconnects = declare.counter(
            "gateway_client_disconnects_total",
            "Clients that left before their stream ended.",
            "route",
        )

        self.resumable_streams = declare.counter(
            "gateway_resumable_streams_total", "Resumable generations started (SPEC §4.5)."
        )
        self.reconnections = declare.counter(
            "gateway_reconnections_total",
            "Reconnections to resumable streams, by what they got (resumed, nothing, refused).",
            "result",
        )
        self.replayed_events = declare.counter(
            "gateway_replayed_events_total",
            "Events sent again to reconnecting readers (the live events after them not counted).",
        )
        self.orphan_cancellations = declare.counter(
            "gateway_orphan_cancellations_total",
            "Resumable generations cancelled because no reader came back in time.",
        )
        self.retained_bytes = declare.gauge(
            "gateway_retained_bytes",
            "Bytes kept after their streams ended (ended resumable streams' events, for "
            "reconnections), under resume_retained_max_bytes.",
        )
        self.retained_evictions = declare.counter(
            "gateway_retained_evictions_total",
            "Entries forgotten before their retention time was over, to stay under "
            "resume_retained_max_bytes (the oldest first), by kind.",
            "kind",
        )
        self.asyncio_tasks = declare.gauge(
            "gateway_asyncio_tasks",
            "Tasks alive in the event loop, as of the scrape (a leak of tasks shows here).",
        )
        self.resume_store_failures = declare.counter(
            "gateway_resume_store_failures_total",
            "Calls to the resumable-stream store (Redis) that failed or timed out.",
        )

        self.deployment_requests = declare.counter(
            "gateway_deployment_requests_total",
            "Upstream attempts per deployment of a model entry (retries and failovers included).",
            "model",
            "deployment",
        )
        self.deployment_failures = declare.counter(
            "gateway_deployment_failures_total",
            "Attempts that failed before their first token, per deployment and error type.",
            "model",
            "deployment",
            "type",
        )
        self.deployment_in_flight = declare.gauge(
            "gateway_deployment_in_flight",
            "Attempts and streams open on a deployment (what least-busy routing counts).",
            "model",
            "deployment",
        )
        self.deployment_cooling = declare.gauge(
            "gateway_deployment_cooling",
            "1 while a deployment is cooling down (skipped by routing), else 0.",
            "model",
            "deployment",
            mode="livemax",
        )
        self.deployment_ttft = declare.histogram(
            "gateway_deployment_time_to_first_token_seconds",
            "From sending an attempt upstream to its first token, per deployment.",
            "model",
            "deployment",
            buckets=LATENCY_BUCKETS,
        )
        self.cooldown_store_failures = declare.counter(
            "gateway_cooldown_store_failures_total",
            "Calls to the shared cooldown store (Redis) that failed or timed out.",
        )

    def of_deployment(self, model: str, deployment: str) -> DeploymentMetrics:
        return DeploymentMetrics(self, model, deployment)

    def model_label(self, model: str) -> str:
        """The `model` label for a served name: configured entries as themselves, and the
        first AD_HOC_MODEL_SERIES `provider/model` names too; any later one `other`."""
        if model in self._configured or model in self._ad_hoc or not model:
            return model
        if len(self._ad_hoc) < AD_HOC_MODEL_SERIES:
            self._ad_hoc.add(model)
            return model
        return OTHER_MODEL

    def of_model(self, model: str, provider: str) -> ModelMetrics:
        """A served model's series (one entry per label pair: no more than the series)."""
        found = self._models.get((model, provider))
        if found is None:
            label = self.model_label(model)
            found = self._models.get((label, provider))
            if found is None:
                found = self._models[(label, provider)] = ModelMetrics(self, label, provider)
        return found

    def request_counter(self, labels: tuple[str, str, str, str, str]) -> Counter:
        """`requests` for (route, model, provider, outcome, type), bound once per series."""
        found = self._requests.get(labels)
        if found is None:
            route, model, provider, outcome, kind = labels
            bounded = (route, self.model_label(model), provider, outcome, kind)
            found = self._requests.get(bounded)
            if found is None:
                found = self._requests[bounded] = self.requests.labels(*bounded)
        return found

    def spend_counter(self, key: str, model: str) -> Counter:
        """`spend` for (key, model), bound once per series: both are configured names."""
        found = self._spends.get((key, model))
        if found is None:
            found = self._spends[(key, model)] = self.spend.labels(key, model)
        return found

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
