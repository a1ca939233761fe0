"""Metric label sets stay bounded whatever names clients send (issue 28): a `provider/model`
name is the client's to compose, and every new label value was series kept for good."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import AD_HOC_MODEL_SERIES, OTHER_MODEL, Metrics


def model_labels(metrics: Metrics, family_name: str) -> set[str]:
    found = set()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name == family_name:
            found |= {sample.labels["model"] for sample in family.samples}
    return found


def test_client_composed_model_names_share_one_label_past_a_cap() -> None:
    metrics = Metrics(["story", "gpt"])
    names = [f"fake/model-{i}" for i in range(AD_HOC_MODEL_SERIES * 3)]
    for name in names:
        metrics.of_model(name, "fake").deltas.inc()
        metrics.request_counter(("/stream", name, "fake", "complete", "")).inc()
    metrics.of_model("story", "fake").deltas.inc()  # configured: itself, even past the cap
    metrics.request_counter(("/stream", "gpt", "openai", "complete", "")).inc()
    first = set(names[:AD_HOC_MODEL_SERIES])
    assert model_labels(metrics, "gateway_deltas") == first | {OTHER_MODEL, "story"}
    assert model_labels(metrics, "gateway_requests") == first | {OTHER_MODEL, "gpt"}
    assert metrics.model_label(names[0]) == names[0]  # the first ones keep their series
    assert metrics.model_label(names[-1]) == OTHER_MODEL
    assert len(metrics._models) == AD_HOC_MODEL_SERIES + 2
    assert len(metrics._requests) == AD_HOC_MODEL_SERIES + 2
