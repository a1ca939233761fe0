"""Serving a relay: admission, priming under the disconnect guard, the committed response."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request, Response

from gateway.api._common import request_id
from gateway.auth import key_of
from gateway.lifecycle import StreamGuard
from gateway.models import Attempt
from gateway.observability import record_of
from gateway.relay import BuildRequest, Relay, open_relay
from gateway.responses import Encoder, RelayEventSourceResponse, RelayResponse, SSEEncoder
from gateway.state import GatewayState

__all__ = ["admit_and_prime", "respond"]


async def admit_and_prime(
    request: Request, state: GatewayState, plan: Sequence[Attempt], build: BuildRequest
) -> tuple[StreamGuard, Relay]:
    """Admit the stream (503 while draining), then prime it under the disconnect guard."""
    key = key_of(request)
    if key is not None:
        key.check_model(plan[0].model)
    lease = await state.limiter.admit(key)
    try:
        guard = StreamGuard(state.drain, request.receive)
    except BaseException:
        await state.limiter.finish(lease, 0)
        raise
    guard.lease = lease
    record = record_of(request.scope)
    state.admitted(record, plan[0].model)
    try:
        relay = await guard.run(open_relay(plan, build, state.attempt_failed))
    except BaseException:
        guard.close()
        state.metrics.active_streams.dec()
        await state.limiter.finish(lease, 0)
        raise
    state.committed(record, relay, plan[0].model)
    return guard, relay


def respond(
    request: Request,
    state: GatewayState,
    encoder: Encoder,
    guard: StreamGuard,
    response_class: type[RelayResponse] | None = None,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Response:
    """The committed response, with the headers every stream carries (SPEC §4.1)."""
    relay, stream_id = encoder.relay, encoder.stream_id
    if response_class is None:
        sse = encoder.media_type == SSEEncoder.media_type
        response_class = RelayEventSourceResponse if sse else RelayResponse
    headers = [
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        (b"x-request-id", request_id(request).encode()),
        (b"x-stream-id", stream_id.encode()),
        (b"x-gateway-model", relay.model.encode()),
        (b"x-gateway-provider", relay.provider.encode()),
        *extra_headers,
    ]
    response = response_class(encoder, guard, headers, finished=state.finished)
    response.record = record_of(request.scope)
    response.limiter = state.limiter
    return response
