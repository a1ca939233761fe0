"""Serving a relay: admission, priming under the disconnect guard, the committed response,
and the collected answer for clients that asked for no stream (one path for every dialect).

`serve_stream` is the one owner of a stream's accounting from its admission until something
takes it over: the response that serves it (`respond`), the collected answer (`collect`) or a
detached generation (the resumable routes). Everything a route does in between (creating a
resumable stream's log in Redis, registering a chat) runs under the stream's guard, so that a
client leaving or a shutdown there is an error like any other before the commit point, and
whatever ends it, a stream nobody took over is given back: its place in
`gateway_active_streams`, the shutdown drain's list, the key's concurrency slot and its
upstream connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fastapi import Request, Response

from gateway.api._common import request_id
from gateway.auth import key_of
from gateway.errors import GatewayError
from gateway.lifecycle import StreamGuard
from gateway.models import Attempt
from gateway.observability import outcome_of, record_of
from gateway.parts import AnswerBlock, assemble
from gateway.providers.base import Delta
from gateway.relay import BuildRequest, Relay, StartStream, open_relay
from gateway.responses import Encoder, RelayEventSourceResponse, RelayResponse, SSEEncoder
from gateway.state import GatewayState
from gateway.tracing import RequestTrace

__all__ = ["Collected", "Serve", "collect", "relay_headers", "respond", "serve_stream"]

# What a route does with an admitted, primed stream: the response that will serve it.
Serve = Callable[[StreamGuard, Relay], Awaitable[Response]]


async def serve_stream(
    request: Request,
    state: GatewayState,
    plan: Sequence[Attempt],
    build: BuildRequest | None,
    serve: Serve,
    start: StartStream | None = None,
) -> Response:
    """Admit and prime a stream, then `serve` it under its guard; a stream that nothing took
    over (`guard.handed_over`) when `serve` fails, or is interrupted anywhere, is given back.
    `start` starts each attempt's stream instead of its adapter (the native path)."""
    guard, relay = await _admit_and_prime(request, state, plan, build, start)
    try:
        return await guard.run(serve(guard, relay))
    except BaseException as exc:
        if not guard.handed_over:
            await _give_back(request, state, guard, relay, exc)
        raise


async def _give_back(
    request: Request, state: GatewayState, guard: StreamGuard, relay: Relay, exc: BaseException
) -> None:
    """End an admitted, primed stream that no response or generation serves, as a stream
    that ended before its first byte (its metrics, the drain, the slot, the upstream)."""
    guard.handed_over = True
    guard.close()
    outcome = outcome_of(exc.type) if isinstance(exc, GatewayError) else "internal_error"
    state.ended(record_of(request.scope), relay, outcome, 0, 0, None)
    try:
        await relay.aclose()
    finally:
        await state.limiter.finish(guard.lease, 0)


async def _admit_and_prime(
    request: Request,
    state: GatewayState,
    plan: Sequence[Attempt],
    build: BuildRequest | None,
    start: StartStream | None,
) -> tuple[StreamGuard, Relay]:
    """Admit the stream (503 while draining), then prime it under the disconnect guard."""
    tracing = state.tracing
    if tracing is None:  # the one test tracing costs when it is off
        return await _admit_and_prime_traced(request, state, plan, build, start, None)
    trace = tracing.request(request, plan[0].model)
    try:
        return await _admit_and_prime_traced(request, state, plan, build, start, trace)
    except BaseException as exc:
        trace.refused(exc)
        raise


async def _admit_and_prime_traced(
    request: Request,
    state: GatewayState,
    plan: Sequence[Attempt],
    build: BuildRequest | None,
    start: StartStream | None,
    trace: RequestTrace | None,
) -> tuple[StreamGuard, Relay]:
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
    state.admitted()
    try:
        relay = await guard.run(open_relay(plan, build, state, start, trace))
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
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
    response_class: type[RelayResponse] | None = None,
) -> Response:
    """The committed response, with the headers every stream carries (SPEC §4.1). It owns the
    stream's accounting from here (its `finished`)."""
    guard.handed_over = True
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
    response = response_class(
        encoder,
        guard,
        headers,
        finished=state.finished,
        keepalive_s=state.settings.sse_keepalive_s,
    )
    response.record = record = record_of(request.scope)
    state.streaming(record)
    response.limiter = state.limiter
    return response


@dataclass(frozen=True, slots=True)
class Collected:
    text: str  # the answer's text (all its text deltas)
    deltas: int
    blocks: list[AnswerBlock]  # the whole answer: text, reasoning, tool calls, in order


async def collect(
    request: Request, state: GatewayState, guard: StreamGuard, relay: Relay
) -> Collected:
    """The whole answer of a primed relay (stream: false), accounted for like a stream:
    metrics, the request's record, the key's slot and tokens. A failure is raised as the
    route's error status (nothing has been sent yet)."""
    guard.handed_over = True  # settled here, whatever happens
    collected: list[Delta] = []
    outcome, error = "complete", None
    try:
        await guard.run(_collect(relay, collected))
    except GatewayError as exc:
        outcome, error = outcome_of(exc.type), exc
        raise
    finally:
        guard.close()
        await relay.aclose()
        text = "".join(delta for delta in collected if isinstance(delta, str))
        state.ended(record_of(request.scope), relay, outcome, len(collected), len(text), error)
        await state.release(guard.lease, relay, len(collected))
    return Collected(text, len(collected), assemble(collected))


async def _collect(relay: Relay, into: list[Delta]) -> None:
    into += relay.first
    async for batch in relay.rest:
        into += batch


def relay_headers(request: Request, relay: Relay) -> dict[str, str]:
    """The headers of a collected answer: which entry and provider served it."""
    return {
        "X-Request-ID": request_id(request),
        "X-Gateway-Model": relay.model,
        "X-Gateway-Provider": relay.provider,
    }
