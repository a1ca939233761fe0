from __future__ import annotations

import orjson
from fastapi.sse import format_sse_event

from gateway.models import Attempt
from gateway.providers import RegisteredProvider
from gateway.providers.base import ProviderSettings, StreamOutcome
from gateway.relay import Relay
from gateway.responses import SSEEncoder


async def _nothing():  # type: ignore[no-untyped-def]
    return
    yield


def test_sse_delta_template_writes_what_fastapi_writes() -> None:
    provider = RegisteredProvider("p", ProviderSettings(), None)  # type: ignore[arg-type]
    relay = Relay(Attempt("m", provider, "u"), "x", _nothing(), StreamOutcome())
    encoder = SSEEncoder(relay, "STREAM")
    for n, delta in enumerate(["plain", 'quote " and \\', "new\nline\r\n", "emoji 😀", "\u2028"]):
        ours = encoder.delta(delta)
        expected = format_sse_event(data_str=orjson.dumps(delta).decode(), id=f"STREAM:{n}")
        assert ours == expected
