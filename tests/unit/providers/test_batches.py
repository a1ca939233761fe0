"""Batches (SPEC §4.1): the deltas of one network read leave together, none held back.

Every adapter yields, per read of the upstream, the deltas that read completed, in order; a
read's deltas before an error are yielded before the error is raised. Whatever the reads, the
flattened deltas are the same.
"""

from __future__ import annotations

import pytest
import respx

from gateway.errors import GatewayError
from gateway.providers.base import StreamOutcome
from tests.conftest import wire
from tests.unit.providers.helpers import chat, make_adapter, mock

CAPTURES = [
    ("openai", "openai/basic.sse"),
    ("anthropic", "anthropic/basic.sse"),
    ("gemini", "gemini/basic.sse"),
    ("ollama", "ollama/basic.ndjson"),
]
FAILURES = [
    ("openai", "openai/stream_error.sse"),
    ("anthropic", "anthropic/stream_error.sse"),
    ("ollama", "ollama/stream_error.ndjson"),
]


async def batches_of(
    router: respx.MockRouter, kind: str, pieces: list[bytes]
) -> tuple[list[list[str]], GatewayError | None]:
    mock(router, kind, pieces)
    batches: list[list[str]] = []
    try:
        async for batch in make_adapter(kind).stream(chat(), StreamOutcome()):
            batches.append(batch)
    except GatewayError as exc:
        return batches, exc
    return batches, None


def byte_by_byte(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


@pytest.mark.parametrize(("kind", "capture"), CAPTURES)
async def test_one_read_is_one_batch_and_byte_reads_are_one_delta_each(
    respx_mock: respx.MockRouter, kind: str, capture: str
) -> None:
    body = wire(capture)
    whole, error = await batches_of(respx_mock, kind, [body])
    assert error is None
    assert len(whole) == 1 and len(whole[0]) > 1  # every delta of the read, together
    split, error = await batches_of(respx_mock, kind, byte_by_byte(body))
    assert error is None
    assert len(split) > 1  # nothing waited for a later read
    if kind != "gemini":  # (one Gemini event may carry several text parts: several deltas)
        assert all(len(batch) == 1 for batch in split)
    assert [delta for batch in split for delta in batch] == whole[0]


@pytest.mark.parametrize(("kind", "capture"), FAILURES)
async def test_a_reads_deltas_before_an_error_are_yielded_before_it_is_raised(
    respx_mock: respx.MockRouter, kind: str, capture: str
) -> None:
    body = wire(capture)
    whole, whole_error = await batches_of(respx_mock, kind, [body])
    split, split_error = await batches_of(respx_mock, kind, byte_by_byte(body))
    assert whole_error is not None and split_error is not None
    assert whole_error.type == split_error.type
    flattened = [delta for batch in split for delta in batch]
    assert flattened  # the captures have text before their error
    assert whole == [flattened]  # the same text reached the client, in one batch
