"""The encoders: one body chunk per upstream read, each delta still in its own frame."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import orjson
import pytest
from fastapi.sse import format_sse_event

from gateway.dialects.anthropic import MessagesEncoder
from gateway.dialects.openai import ChatCompletionEncoder
from gateway.dialects.ui_messages import UIMessageEncoder
from gateway.models import Attempt
from gateway.providers import RegisteredProvider
from gateway.providers.base import ProviderSettings, StreamOutcome
from gateway.relay import Relay
from gateway.responses import FORMATS, Encoder, SSEEncoder, StreamTruncated


async def _nothing():  # type: ignore[no-untyped-def]
    return
    yield


def test_sse_delta_template_writes_what_fastapi_writes() -> None:
    provider = RegisteredProvider("p", ProviderSettings(), None)  # type: ignore[arg-type]
    relay = Relay(Attempt("m", provider, "u"), ["x"], _nothing(), StreamOutcome())
    encoder = SSEEncoder(relay, "STREAM")
    for n, delta in enumerate(["plain", 'quote " and \\', "new\nline\r\n", "emoji 😀", "\u2028"]):
        ours = encoder.delta(delta)
        expected = format_sse_event(data_str=orjson.dumps(delta).decode(), id=f"STREAM:{n}")
        assert ours == expected


BATCHES = [["Rick: ", "come "], ["on, "], ["Morty", "! ", "\u2028"]]
ENCODERS: dict[str, Callable[[Relay], Encoder]] = {
    **{name: (lambda relay, cls=cls: cls(relay, "S")) for name, cls in FORMATS.items()},
    "openai": lambda relay: ChatCompletionEncoder(relay, "S", include_usage=True),
    "anthropic": lambda relay: MessagesEncoder(relay, "S", "req"),
    "ui": lambda relay: UIMessageEncoder(relay, "S"),
}


async def _rest(
    batches: list[list[str]], error: Exception | None = None
) -> AsyncIterator[list[str]]:
    for batch in batches:
        yield batch
    if error is not None:
        raise error


def _relay(first: list[str], rest: AsyncIterator[list[str]]) -> Relay:
    provider = RegisteredProvider("p", ProviderSettings(), None)  # type: ignore[arg-type]
    outcome = StreamOutcome(finish_reason="stop")
    return Relay(Attempt("m", provider, "u"), first, rest, outcome)


async def _chunks(encoder: Encoder) -> list[bytes]:
    chunks = [chunk async for chunk in encoder.body()]
    return [*chunks, encoder.ending()]


@pytest.mark.parametrize("name", ENCODERS)
async def test_one_chunk_per_read_with_the_bytes_of_one_frame_per_delta(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.dialects.openai

    # Both encoders stamp the same `created` second, wherever the clock is.
    monkeypatch.setattr(gateway.dialects.openai, "time", SimpleNamespace(time=lambda: 1.0))
    make = ENCODERS[name]
    batched = await _chunks(make(_relay(BATCHES[0], _rest(BATCHES[1:]))))
    one_by_one = [[delta] for batch in BATCHES for delta in batch]
    single = await _chunks(make(_relay(one_by_one[0], _rest(one_by_one[1:]))))
    assert len(batched) == len(BATCHES) + 1  # opening with the first read; then one per read
    assert len(single) == len(one_by_one) + 1
    assert b"".join(batched) == b"".join(single)  # byte-identical apart from segmentation


@pytest.mark.parametrize("name", ENCODERS)
async def test_a_failure_is_the_last_chunk_after_the_text_already_in_hand(name: str) -> None:
    from gateway.errors import UpstreamUnavailable

    encoder = ENCODERS[name](_relay(["a", "b"], _rest([["c"]], UpstreamUnavailable("broke"))))
    chunks = [chunk async for chunk in encoder.body()]
    assert len(chunks) == 2 and encoder.deltas == 3
    if name == "text":
        with pytest.raises(StreamTruncated):  # no in-band error: the connection is cut
            encoder.ending()
    else:  # each dialect's own in-band error frame, and nothing that reads as a normal end
        assert encoder.ending() == IN_BAND_ERRORS[name]


IN_BAND_ERRORS = {
    "sse": b'event: error\ndata: {"type":"upstream_unavailable","message":"broke"}\nid: S:3\n\n',
    "ndjson": b'{"error":{"type":"upstream_unavailable","message":"broke"}}\n',
    "openai": b'data: {"error":{"message":"broke","type":"upstream_unavailable","param":null,'
    b'"code":"upstream_unavailable"}}\n\n',
    "anthropic": b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
    b'"message":"broke"},"request_id":"req"}\n\n',
    "ui": b'data: {"type":"error","errorText":"upstream_unavailable: broke"}\n\ndata: [DONE]\n\n',
}
