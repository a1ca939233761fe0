"""The running gateway's state, built in the lifespan and reached through the app."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from gateway.errors import GatewayError
from gateway.lifecycle import Drain
from gateway.limits import Lease, Limiter
from gateway.metrics import Metrics
from gateway.models import Attempt, ModelTable
from gateway.observability import RequestRecord
from gateway.providers import RegisteredProvider
from gateway.resume import Generations
from gateway.retention import Retained
from gateway.settings import Settings
from gateway.spend import spend_of
from gateway.tracing import Tracing

if TYPE_CHECKING:
    from gateway.relay import Relay
    from gateway.responses import RelayResponse

__all__ = ["GatewayState", "state_of"]

log = logging.getLogger("gateway.access")


@dataclass(slots=True)
class GatewayState:
    settings: Settings
    providers: Mapping[str, RegisteredProvider]
    models: ModelTable
    drain: Drain
    metrics: Metrics
    limiter: Limiter
    generations: Generations
    retained: Retained  # what is kept after streams end, under one byte budget (SPEC §6)
    tracing: Tracing | None = None  # None: tracing is off (SPEC §4.4)

    # The relay's AttemptWatcher: routing learns from every attempt (gateway.balancer).
    def attempt_started(self, attempt: Attempt) -> None:
        self.models.balancer.started(attempt)

    async def attempt_failed(self, attempt: Attempt, error: GatewayError) -> None:
        self.metrics.upstream_errors.labels(attempt.served_by, error.type).inc()
        await self.models.balancer.failed(attempt, error)

    def attempt_abandoned(self, attempt: Attempt) -> None:
        self.models.balancer.ended(attempt)

    def attempt_primed(self, attempt: Attempt, seconds: float) -> None:
        self.models.balancer.primed(attempt, seconds)

    def admitted(self) -> None:
        self.metrics.active_streams.inc()

    def streaming(self, record: RequestRecord | None) -> None:
        """A stream's response starts: one line, so that long streams show while they run."""
        if record is not None and log.isEnabledFor(logging.INFO):
            fields = {
                "request_id": record.request_id,
                "route": record.route,
                "model": record.model,
                "provider": record.provider,
            }
            log.info("stream started", extra={"fields": fields})

    def committed(self, record: RequestRecord | None, relay: Relay, requested: str) -> None:
        if relay.trace is not None:
            relay.trace.committed(relay)
        if relay.model != requested:
            label = self.metrics.model_label
            self.metrics.fallbacks.labels(label(requested), label(relay.model)).inc()
        if record is not None:
            record.model, record.provider = relay.model, relay.provider
            elapsed = time.perf_counter() - record.started
            record.time_to_first_delta_ms = round(elapsed * 1000, 3)
            self.metrics.of_model(relay.model, relay.provider).time_to_first_delta.observe(elapsed)

    def ended(
        self,
        record: RequestRecord | None,
        relay: Relay,
        outcome: str,
        deltas: int,
        sent: int,
        error: GatewayError | None,
    ) -> None:
        """Called once per admitted stream that committed, whatever ended it."""
        metrics, provider = self.metrics, relay.provider
        series = metrics.of_model(relay.model, provider)
        metrics.active_streams.dec()
        self.models.balancer.ended(relay.attempt)
        series.deltas.inc(deltas)
        series.bytes_out.inc(sent)
        usage = relay.outcome.usage
        if usage is not None:
            series.prompt_tokens.inc(usage.prompt_tokens or 0)
            series.completion_tokens.inc(usage.completion_tokens or 0)
        if error is not None:
            metrics.upstream_errors.labels(provider, error.type).inc()
        if outcome == "client_disconnect" and record is not None:
            metrics.client_disconnects.labels(record.route).inc()
        spend = relay.spend = spend_of(relay.attempt, usage, relay.request, deltas)
        if relay.trace is not None:
            relay.trace.ended(relay, outcome, error, spend, record.status if record else None)
        if record is None:
            return
        if spend is not None:
            record.spend, record.spend_estimated = spend.cost, spend.estimated
        record.outcome, record.deltas, record.bytes_out = outcome, deltas, sent
        record.error_type = error.type if error is not None else record.error_type
        record.set_usage(usage)
        duration = time.perf_counter() - record.started
        series.stream_duration(outcome).observe(duration)

    async def finished(self, response: RelayResponse) -> None:
        encoder = response.encoder
        self.ended(
            response.record,
            encoder.relay,
            response.result,
            encoder.deltas,
            response.bytes_out,
            encoder.error,
        )
        await self.release(response.guard.lease, encoder.relay, encoder.deltas)

    async def release(self, lease: Lease | None, relay: Relay, deltas: int) -> None:
        """Give the key's stream slot back, charge the tokens (reported, else estimated) and
        the spend (`ended` priced it)."""
        usage = relay.outcome.usage
        tokens = usage.total_tokens if usage is not None and usage.total_tokens else deltas
        spend = relay.spend
        if spend is not None:
            key = lease.key.name if lease is not None else ""
            self.metrics.spend_counter(key, relay.model).inc(spend.cost)
        await self.limiter.finish(lease, tokens, spend.nano if spend is not None else 0)


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state
