"""Choosing among an entry's deployments (SPEC §5.3), and what each attempt teaches the choice.

A `Pool` is one model entry's deployments. Per request it orders them: the chosen one first
(sticky conversation, else the entry's `routing`), then the other healthy ones (weight-0
failover targets last); a cooling deployment is left out, and when every one is cooling, only
the one whose cooldown ends first is tried. The `Balancer` hears every attempt start, fail,
prime or end (the relay and the state call it), and keeps what the strategies read: streams in
flight and a decaying time to first token per deployment, in this process, plus the cooldowns
(gateway.cooldowns), shared through Redis when there is one.

`least-busy` counts this replica's streams: every replica behind a load balancer sees about its
share of the traffic, so its own counts rank the deployments as the global ones would, without
a Redis round trip per stream start and end, nor leases to recover the counts of a replica that
died (docs/DECISIONS.md).
"""

from __future__ import annotations

import logging
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING

from gateway.cooldowns import CooldownRule, Cooldowns
from gateway.errors import GatewayError, UpstreamRateLimited
from gateway.metrics import DeploymentMetrics
from gateway.sticky import rendezvous_order

if TYPE_CHECKING:
    from gateway.models import Attempt

__all__ = ["Balancer", "Deployment", "Pool"]

log = logging.getLogger("gateway.balancer")

EXPLORE = 0.1  # latency routing: the share of requests sent by weight, to keep measuring
DECAY = 0.3  # latency routing: the weight of the newest time to first token in the average


@dataclass(eq=False, slots=True)
class Deployment:
    """A configured deployment at run time: what routing reads and what it has learned."""

    key: str  # "entry/deployment": the cooldowns' key, unique in the configuration
    name: str  # what X-Gateway-Provider, the logs and the metrics show
    weight: float
    series: DeploymentMetrics
    pool: Pool | None = None  # set by the pool that owns it
    in_flight: int = 0
    ttft: float | None = None  # decaying average of seconds to first token; None: unmeasured


def _name(attempt: Attempt) -> str:
    return attempt.served_by


def _weight(attempt: Attempt) -> float:
    return attempt.deployment.weight if attempt.deployment is not None else 1.0


def _key(attempt: Attempt) -> str:
    return attempt.deployment.key if attempt.deployment is not None else ""


def _in_flight(attempt: Attempt) -> int:
    return attempt.deployment.in_flight if attempt.deployment is not None else 0


def _ttft(attempt: Attempt) -> float:
    ttft = attempt.deployment.ttft if attempt.deployment is not None else None
    return ttft if ttft is not None else 0.0


def _measured(attempt: Attempt) -> bool:
    return attempt.deployment is None or attempt.deployment.ttft is not None


class Pool:
    """One model entry's deployments and its routing.

    What does not change between requests is worked out here once: the deployments that may
    be chosen first (weight > 0), their cumulative weights, and the order of the others after
    each first choice; a request where nothing is cooling (the usual case) only draws.
    """

    def __init__(
        self,
        attempts: Sequence[Attempt],
        routing: str,
        sticky: bool,
        rule: CooldownRule,
        balancer: Balancer,
    ) -> None:
        self.attempts = tuple(attempts)
        self.routing = routing
        self.sticky = sticky
        self.rule = rule
        self._cooldowns = balancer.cooldowns
        self._rng = balancer.rng
        for attempt in self.attempts:
            if attempt.deployment is not None:
                attempt.deployment.pool = self
        self._firsts = [a for a in self.attempts if _weight(a) > 0] or list(self.attempts)
        self._cumulative = list(accumulate(_weight(a) for a in self._firsts))
        self._orders = {first: self._order(first, self.attempts) for first in self.attempts}

    @property
    def single(self) -> bool:
        return len(self.attempts) == 1

    def plan(self, conversation: str | None) -> Sequence[Attempt]:
        """This request's deployments, in the order to try them."""
        if self.single:
            return self.attempts
        healthy = self.attempts
        until = self._cooldowns.until
        if until:  # something cooled down lately: leave out what still is
            now = self._cooldowns.clock()
            healthy = tuple(a for a in self.attempts if until.get(_key(a), 0.0) <= now)
            if not healthy:
                return (min(self.attempts, key=lambda a: until.get(_key(a), 0.0)),)
            if len(healthy) == len(self.attempts):  # what cools is another entry's
                healthy = self.attempts
        if conversation is not None and self.sticky and len(healthy) > 1:
            return rendezvous_order(conversation, healthy, _name, _weight)
        if healthy is self.attempts:
            return self._orders[self._choose(self._firsts, self._cumulative)]
        if len(healthy) == 1:
            return healthy
        firsts = [a for a in healthy if _weight(a) > 0] or list(healthy)
        return self._order(self._choose(firsts, None), healthy)

    @staticmethod
    def _order(first: Attempt, healthy: Sequence[Attempt]) -> tuple[Attempt, ...]:
        """The first choice, then the others (weight-0 failover targets last)."""
        rest = sorted((a for a in healthy if a is not first), key=lambda a: _weight(a) == 0)
        return (first, *rest)

    def _choose(self, candidates: list[Attempt], cumulative: list[float] | None) -> Attempt:
        if self.routing == "least-busy":
            fewest = min(_in_flight(a) for a in candidates)
            idlest = [a for a in candidates if _in_flight(a) == fewest]
            if len(idlest) < len(candidates):
                candidates, cumulative = idlest, None
        elif self.routing == "latency" and self._rng.random() >= EXPLORE:
            unmeasured = [a for a in candidates if not _measured(a)]
            if not unmeasured:
                return min(candidates, key=_ttft)
            candidates, cumulative = unmeasured, None
        return self._by_weight(candidates, cumulative)

    def _by_weight(self, candidates: list[Attempt], cumulative: list[float] | None) -> Attempt:
        if len(candidates) == 1:
            return candidates[0]
        if cumulative is None:
            cumulative = list(accumulate(_weight(a) for a in candidates))
        drawn = self._rng.random() * cumulative[-1]
        return candidates[bisect_right(cumulative, drawn)]


class Balancer:
    """The pools' shared parts (cooldowns, the random source) and the attempts' accounting.

    Called once per attempt and once per stream end, never per chunk. Attempts of names that
    are not configured entries (`provider/model`) have no deployment and are not counted.
    """

    def __init__(self, cooldowns: Cooldowns, rng: random.Random | None = None) -> None:
        self.cooldowns = cooldowns
        self.rng = rng or random.Random()  # noqa: S311  # load spreading, not secrets
        self.deployments: list[Deployment] = []

    def add(self, pool: Pool) -> None:
        """A pool of several deployments: theirs are the cooldowns to share and to show (a
        lone deployment never cools down)."""
        if pool.single:
            return
        self.deployments += [a.deployment for a in pool.attempts if a.deployment is not None]
        self.cooldowns.watch([each.key for each in self.deployments])

    def started(self, attempt: Attempt) -> None:
        if (deployment := attempt.deployment) is not None:
            deployment.in_flight += 1
            deployment.series.requests.inc()
            deployment.series.in_flight.inc()

    def primed(self, attempt: Attempt, seconds: float) -> None:
        if (deployment := attempt.deployment) is not None:
            previous = deployment.ttft
            deployment.ttft = (
                seconds if previous is None else previous + DECAY * (seconds - previous)
            )
            deployment.series.time_to_first_token.observe(seconds)

    def ended(self, attempt: Attempt) -> None:
        """An attempt that started is over: it failed, was abandoned, or its stream ended."""
        if (deployment := attempt.deployment) is not None:
            deployment.in_flight -= 1
            deployment.series.in_flight.dec()

    async def failed(self, attempt: Attempt, error: GatewayError) -> None:
        """Before the first token: count it, and cool the deployment down when it trips."""
        self.ended(attempt)
        deployment = attempt.deployment
        if deployment is None:
            return
        deployment.series.failed(error.type)
        pool = deployment.pool
        if pool is None or pool.single or not error.retryable:
            return  # a lone deployment has nowhere to steer to; a 400 is the request's fault
        cooldowns = self.cooldowns
        if isinstance(error, UpstreamRateLimited):
            ends = await cooldowns.rate_limited(deployment.key, pool.rule, error.retry_after)
        else:
            ends = await cooldowns.failed(deployment.key, pool.rule, error.retry_after)
        if ends > cooldowns.clock():
            deployment.series.cooling.set(1)
            log.warning(
                "deployment %s cooling down for %.0f s",
                deployment.key,
                ends - cooldowns.clock(),
            )

    def show_cooling(self) -> None:
        """The cooling gauges, from the current view (the cooldowns' refresh calls it)."""
        now, until = self.cooldowns.clock(), self.cooldowns.until
        for deployment in self.deployments:
            deployment.series.cooling.set(1 if until.get(deployment.key, 0.0) > now else 0)
