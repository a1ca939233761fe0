"""SPEC §6: what is kept after streams end shares one byte budget, the oldest forgotten first,
and a reconnection to a forgotten stream gets 204 exactly as an expired one does."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from gateway.lifecycle import Drain
from gateway.metrics import Metrics
from gateway.resume.generation import Generations, retained_size
from gateway.retention import Retained
from gateway.settings import ResumeConfig
from tests.conftest import FAST_FAKE, app_client, settings_from
from tests.unit.test_resume_parts import Settled, _relay


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for each in family.samples:
            if each.name == name and each.labels == labels:
                return float(each.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_the_oldest_entries_go_first_whatever_their_kind() -> None:
    metrics = Metrics()
    retained = Retained(100, metrics)
    forgotten: list[tuple[str, str]] = []
    retained.register("stream", lambda key: forgotten.append(("stream", key)))
    retained.register("response", lambda key: forgotten.append(("response", key)))
    retained.keep("stream", "a", 40)
    retained.keep("response", "b", 40)
    retained.keep("stream", "c", 20)
    assert forgotten == [] and retained.bytes == 100  # at the budget: nothing goes
    retained.drop("stream", "a")  # expired by its owner: not an eviction
    retained.keep("stream", "d", 50)
    assert forgotten == [("response", "b")]  # the oldest still held, of another kind
    retained.keep("stream", "e", 31)
    assert forgotten == [("response", "b"), ("stream", "c")]
    assert retained.bytes == 81 and len(retained) == 2
    retained.keep("stream", "huge", 101)  # alone over the budget: everything goes, it too
    assert [key for _, key in forgotten[2:]] == ["d", "e", "huge"]
    assert retained.bytes == 0
    assert sample(metrics, "gateway_retained_evictions_total", kind="stream") == 4
    assert sample(metrics, "gateway_retained_evictions_total", kind="response") == 1
    assert sample(metrics, "gateway_retained_bytes") == 0


async def test_ended_streams_are_evicted_oldest_first_and_then_answer_nothing() -> None:
    texts = ["alpha ", "beta ", "gamma"]
    sizes = []
    for probe in ("P",):  # one record's size, as the registry counts it
        generations = Generations(ResumeConfig(), None, Drain(), Metrics())
        await _run(generations, probe, texts)
        sizes.append(retained_size(generations.finished[probe]))
        await generations.close()
    assert sizes[0] > sum(len(text) for text in texts)  # the events and what holds them
    metrics = Metrics()
    config = ResumeConfig(resume_retained_max_bytes=2 * sizes[0])  # room for two
    generations = Generations(config, None, Drain(), metrics)
    for stream_id in ("S1", "S2", "S3"):
        await _run(generations, stream_id, texts)
    assert list(generations.finished) == ["S2", "S3"]  # S1, the oldest, was forgotten
    assert await generations.attach("S1", "me", -1) is None  # 204, as for an expired one
    reader = await generations.attach("S2", "me", 0)
    assert reader is not None
    assert [event async for event in reader][:2] == [(1, "beta "), (2, "gamma")]
    assert sample(metrics, "gateway_retained_bytes") == 2 * sizes[0]
    assert sample(metrics, "gateway_retained_evictions_total", kind="stream") == 1
    # The evicted stream's expiry entry went with it (it was memory the budget did not count).
    assert [stream_id for _, stream_id in generations._expiring] == ["S2", "S3"]
    generations._expiring[0] = (0.0, "S2")  # S2's retention ends
    generations._sweep()
    assert list(generations.finished) == ["S3"]
    assert generations.retained.bytes == sizes[0]
    await generations.close()


async def _run(generations: Generations, stream_id: str, texts: list[str]) -> None:
    generation = await generations.start(stream_id, "me", _relay(texts), Settled())
    assert generation is not None
    async with asyncio.timeout(5):
        await generation.task


async def test_a_reconnection_to_an_evicted_stream_gets_204() -> None:
    # Each story answer is a few KiB: a budget of 1 byte keeps none of them.
    settings = settings_from(FAST_FAKE + "[resume]\nresume_retained_max_bytes = 1\n")
    async with app_client(settings) as (client, app):
        first = await client.post("/stream?format=sse", json={"prompt": "x", "resumable": True})
        stream_id = first.headers["x-stream-id"]
        await ended(app, stream_id)
        again = await client.get(f"/stream/{stream_id}", params={"after": "0"})
        by_header = await client.get("/stream", headers={"Last-Event-ID": f"{stream_id}:0"})
    assert first.status_code == 200 and "event: done" in first.text
    assert again.status_code == 204 and by_header.status_code == 204
    kept = settings_from(FAST_FAKE)
    async with app_client(kept) as (client, app):
        first = await client.post("/stream?format=sse", json={"prompt": "x", "resumable": True})
        stream_id = first.headers["x-stream-id"]
        await ended(app, stream_id)
        again = await client.get(f"/stream/{stream_id}", params={"after": "0"})
    assert again.status_code == 200 and "event: done" in again.text  # within the budget


async def ended(app: FastAPI, stream_id: str) -> None:
    """The generation's task is done, and so its registry has moved it to the ended ones."""
    generation = app.state.gateway.generations.local.get(stream_id)
    if generation is not None:
        # A callback added now runs after the registry's own (added when it started), even
        # when the task is already done.
        after_registry = asyncio.get_running_loop().create_future()
        generation.task.add_done_callback(lambda _: after_registry.set_result(None))
        async with asyncio.timeout(5):
            await after_registry
