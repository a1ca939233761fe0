"""The commit point (SPEC §4.1): run the attempt plan until one yields its first delta.

Everything that fails before the first delta is raised as a `GatewayError`, so the route can
still answer with a proper status; the plan's attempts (the entry's deployments, then its
fallbacks') are tried in order for retryable errors, and the same one is retried when its
provider sets `retries`. Once a first delta is in hand, the
caller gets a `Relay`: the first batch of deltas (those of the network read that brought the
first delta), the rest of the stream in batches, and where it came from. From then on nothing
is retried (a retry after partial output would duplicate text).

This is also the one place where an exception that is not a `GatewayError`, raised by any
adapter, becomes `upstream_protocol` (logged with its traceback): before the first delta a
proper status and the next fallback, after it the in-band error. A bug in an adapter, or an
upstream shape nobody foresaw, can never become a 500 or a stream cut without an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from gateway.errors import GatewayError, UpstreamProtocolError, UpstreamTimeout
from gateway.models import Attempt
from gateway.providers.base import Batch, ChatRequest, StreamOutcome

if TYPE_CHECKING:
    from gateway.spend import Spend
    from gateway.tracing import RequestTrace

__all__ = ["AttemptWatcher", "BuildRequest", "Relay", "StartStream", "open_relay"]

log = logging.getLogger("gateway.relay")


class Relay:
    """A primed stream. Iterate `rest` (batches) after sending `first`; always `aclose()` it.

    `first` is the first batch: the deltas of the read that brought the first delta (empty
    only for an answer that finished with no text at all).
    """

    __slots__ = ("attempt", "first", "outcome", "request", "rest", "spend", "trace")

    def __init__(
        self,
        attempt: Attempt,
        first: Batch,
        rest: AsyncIterator[Batch],
        outcome: StreamOutcome,
        request: ChatRequest | None = None,
    ) -> None:
        self.attempt = attempt
        self.first = first
        self.rest = rest
        self.outcome = outcome
        self.request = request  # what was sent (the spend's estimate of unreported input)
        self.trace: RequestTrace | None = None  # the request's spans, when tracing is on
        self.spend: Spend | None = None  # what it cost, once it ended (priced models only)

    @property
    def model(self) -> str:
        return self.attempt.model

    @property
    def provider(self) -> str:
        """The deployment that served (X-Gateway-Provider); for one-provider entries, the
        provider's name."""
        return self.attempt.served_by

    async def aclose(self) -> None:
        aclose = getattr(self.rest, "aclose", None)
        if aclose is not None:
            await aclose()


BuildRequest = Callable[[Attempt], ChatRequest]


class AttemptWatcher(Protocol):
    """Told about every attempt (never about chunks): routing's counts, cooldowns, metrics.

    Every attempt that `started` gets exactly one of `failed`, `abandoned` or `primed`; a
    primed one is ended by whoever ends its stream (`GatewayState.ended`)."""

    def attempt_started(self, attempt: Attempt) -> None: ...

    async def attempt_failed(self, attempt: Attempt, error: GatewayError) -> None: ...

    def attempt_abandoned(self, attempt: Attempt) -> None: ...

    def attempt_primed(self, attempt: Attempt, seconds: float) -> None: ...


# Starts one attempt's stream; the native path (gateway.native) forwards the client's body
# instead of building an adapter request.
StartStream = Callable[[Attempt, StreamOutcome], AsyncIterator[Batch]]


def _adapter_stream(request: ChatRequest) -> StartStream:
    def start(attempt: Attempt, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        return attempt.provider.adapter.stream(request, outcome)

    return start


async def open_relay(
    plan: Sequence[Attempt],
    build: BuildRequest | None,
    watcher: AttemptWatcher | None = None,
    start: StartStream | None = None,
    trace: RequestTrace | None = None,
) -> Relay:
    """Prime the first delta of the first attempt that works (deployments, fallbacks, retries).

    `build` turns each attempt into the adapter's request (entry params merged per attempt);
    `start`, when given, starts each attempt's stream instead (the native path). `trace`, when
    tracing is on, gets a span per attempt (and carries it upstream).
    """
    last: GatewayError | None = None
    clock = asyncio.get_running_loop().time
    for attempt in plan:
        config = attempt.provider.config
        for retry in range(config.retries + 1):
            if watcher is not None:
                watcher.attempt_started(attempt)
            started = clock()
            try:
                if start is not None:  # the native path: the client's body, no adapter request
                    request, opener = None, start
                else:
                    assert build is not None, "open_relay needs build or start"
                    request = build(attempt)
                    opener = _adapter_stream(request)
                if trace is not None:
                    trace.attempt(attempt, request, retry)
                relay = await _prime(attempt, opener, request)
                relay.trace = trace
            except GatewayError as exc:
                if trace is not None:
                    trace.attempt_failed(exc)
                log.warning(
                    "attempt %s via %s failed: %s: %s",
                    attempt.model,
                    attempt.served_by,
                    exc.type,
                    exc.message,
                )
                if watcher is not None:
                    await watcher.attempt_failed(attempt, exc)
                if not exc.retryable:
                    raise
                last = exc
                if retry < config.retries:
                    await _backoff(exc, config.retry_after_max_s)
                continue
            except BaseException:
                if watcher is not None:
                    watcher.attempt_abandoned(attempt)
                raise
            if watcher is not None:
                watcher.attempt_primed(attempt, clock() - started)
            return relay
    assert last is not None
    raise last


async def _backoff(error: GatewayError, ceiling: float) -> None:
    await asyncio.sleep(min(error.retry_after or 0.0, ceiling))


async def _prime(attempt: Attempt, start: StartStream, request: ChatRequest | None) -> Relay:
    """`request`: what the adapter was sent (None on the native path), kept for the spend."""
    config = attempt.provider.config
    outcome = StreamOutcome()
    stream = start(attempt, outcome)
    started = asyncio.get_running_loop().time()
    deadline = config.first_token_timeout
    if config.total_timeout is not None:
        deadline = min(deadline, config.total_timeout)
    try:
        async with asyncio.timeout(deadline):
            first = await anext(stream)
    except StopAsyncIteration:
        return _empty(attempt, outcome, request)
    except TimeoutError:
        await _close(stream)
        raise UpstreamTimeout(f"no first token within {deadline:g} s") from None
    except GatewayError:
        await _close(stream)
        raise
    except Exception as exc:
        await _close(stream)
        raise _adapter_failed(attempt, exc) from exc
    except BaseException:
        await _close(stream)
        raise
    deadline_at = None if config.total_timeout is None else started + config.total_timeout
    return Relay(attempt, first, _guarded(attempt, stream, deadline_at), outcome, request)


def _adapter_failed(attempt: Attempt, exc: Exception) -> UpstreamProtocolError:
    log.error(
        "provider %s raised %s; answered as upstream_protocol",
        attempt.provider.name,
        type(exc).__name__,
        exc_info=exc,
    )
    return UpstreamProtocolError("the upstream sent something the gateway could not read")


def _empty(attempt: Attempt, outcome: StreamOutcome, request: ChatRequest | None) -> Relay:
    # A stream that finished properly with no text (a refusal, max_tokens=0...) is an empty
    # answer; one that just stopped is a broken upstream.
    if outcome.finish_reason is None:
        raise UpstreamProtocolError("the upstream stream ended without any text or finish")
    return Relay(attempt, [], _nothing(), outcome, request)


async def _nothing() -> AsyncGenerator[Batch, None]:
    return
    yield  # pragma: no cover - makes this an async generator


async def _guarded(
    attempt: Attempt, stream: AsyncIterator[Batch], deadline: float | None
) -> AsyncGenerator[Batch, None]:
    """The rest of the stream, with adapter bugs made `upstream_protocol`, and `total_timeout`.

    The deadline (a timer per read, so only when configured) wraps each read, never a
    `yield`: a timeout held across a yield would fire in the consumer's code instead of here.
    """
    try:
        while True:
            try:
                if deadline is None:
                    batch = await anext(stream)
                else:
                    async with asyncio.timeout_at(deadline):
                        batch = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                if deadline is None:
                    raise _adapter_failed(attempt, exc) from exc
                raise UpstreamTimeout("the stream exceeded its total time-out") from None
            except GatewayError:
                raise
            except Exception as exc:
                raise _adapter_failed(attempt, exc) from exc
            yield batch
    finally:
        await _close(stream)


async def _close(stream: AsyncIterator[Batch]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
