"""Which deployments are cooling down (SPEC §5.3), and until when.

A deployment cools down after `cooldown_failures` retryable failures within
`cooldown_window_s`, or at once after a 429, for `cooldown_s` (or the upstream's `Retry-After`
when longer). Routing reads `until` only: a dict lookup in this process, never a Redis call,
so the chosen deployment costs the request nothing shared and the stream path nothing at all.

With Redis (the limits' client), the failure counts and the cooldowns are shared: a failure
is counted by one script call on the failure path (bounded by `redis_timeout_s`), which answers
the deployment's cooldown end; a background refresh reads every configured deployment's
cooldown end with one MGET every `REFRESH_S`, so a cooldown one replica started reaches the
others within that. Redis failing never fails a request: routing is advice, so the failure is
counted locally instead (this replica still steers around what it sees failing), the last view
is kept (its cooldowns still end on time), and the outage is logged once a minute and counted.

Times are wall-clock seconds from the injectable clock (the limits' clock): every replica
compares the same numbers, and tests move time instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.metrics import Metrics
from gateway.redis_client import Outage

__all__ = ["REFRESH_S", "CooldownRule", "Cooldowns"]

log = logging.getLogger("gateway.cooldowns")
REFRESH_S = 1.0

# KEYS: the failures (a sorted set of failure times), the cooldown end (ms, as a string).
# ARGV: now_ms, window_ms, failures that trip it, cooldown_ms, 1 = trip now (a 429), a unique
# member. Returns the cooldown end in ms (0: not cooling).
_FAILED = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local trip = ARGV[5] == '1'
if not trip then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  redis.call('ZADD', KEYS[1], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], window)
  trip = redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3])
end
local ends = tonumber(redis.call('GET', KEYS[2]) or '0')
if trip then
  redis.call('DEL', KEYS[1])
  local cool = tonumber(ARGV[4])
  if now + cool > ends and cool > 0 then
    ends = now + cool
    redis.call('SET', KEYS[2], ends, 'PX', cool)
  end
end
return ends
"""


@dataclass(frozen=True, slots=True)
class CooldownRule:
    """An entry's `cooldown_failures`, `cooldown_window_s` and `cooldown_s`."""

    failures: int = 3
    window_s: float = 60.0
    cooldown_s: float = 30.0

    def length(self, retry_after: float | None) -> float:
        return max(self.cooldown_s, retry_after or 0.0)


class Cooldowns:
    """Cooldown ends by deployment key (`entry/deployment`), in this process and in Redis."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        redis: Any = None,
        timeout_s: float = 0.25,
        metrics: Metrics | None = None,
    ) -> None:
        self.clock = clock
        # What routing reads (absent or past: not cooling). The refresh drops what has ended,
        # so that while nothing cools, routing checks nothing.
        self.until: dict[str, float] = {}
        self._failures: dict[str, deque[float]] = {}
        self._redis = redis
        self._timeout_s = timeout_s
        self._script: Any = redis.register_script(_FAILED) if redis is not None else None
        self._keys: list[str] = []
        self._refresher: asyncio.Task[None] | None = None
        counter = metrics.cooldown_store_failures if metrics is not None else None
        self._store_outage = Outage(log, counter)
        self.on_refresh: Callable[[], None] | None = None  # gauges follow the view

    def watch(self, keys: Sequence[str]) -> None:
        """The configured deployments' keys: what the refresh reads (a bounded set)."""
        self._keys = list(keys)

    def ends(self, key: str) -> float:
        return self.until.get(key, 0.0)

    async def failed(self, key: str, rule: CooldownRule, retry_after: float | None) -> float:
        """Count one retryable failure; answer the cooldown end (0 or past: not cooling)."""
        return await self._record(key, rule, retry_after, trip=False)

    async def rate_limited(self, key: str, rule: CooldownRule, retry_after: float | None) -> float:
        """A 429: cool down at once, for `Retry-After` when longer than `cooldown_s`."""
        return await self._record(key, rule, retry_after, trip=True)

    async def _record(
        self, key: str, rule: CooldownRule, retry_after: float | None, trip: bool
    ) -> float:
        now = self.clock()
        if self._script is not None:
            try:
                ends = await self._shared(key, rule, retry_after, trip, now)
            except Exception as exc:
                self._outage(exc)
            else:
                return self._set(key, ends)
        return self._set(key, self._local(key, rule, retry_after, trip, now))

    async def _shared(
        self, key: str, rule: CooldownRule, retry_after: float | None, trip: bool, now: float
    ) -> float:
        args = [
            int(now * 1000),
            max(1, int(rule.window_s * 1000)),
            rule.failures,
            int(rule.length(retry_after) * 1000),
            1 if trip else 0,
            secrets.token_hex(6),
        ]
        async with asyncio.timeout(self._timeout_s):
            ends_ms = await self._script(keys=[_failures_key(key), _until_key(key)], args=args)
        return int(ends_ms) / 1000

    def _local(
        self, key: str, rule: CooldownRule, retry_after: float | None, trip: bool, now: float
    ) -> float:
        if not trip:
            seen = self._failures.setdefault(key, deque())
            seen.append(now)
            while seen and seen[0] <= now - rule.window_s:
                seen.popleft()
            trip = len(seen) >= rule.failures
        if not trip or rule.length(retry_after) <= 0:
            return self.ends(key)
        self._failures.pop(key, None)
        return max(self.ends(key), now + rule.length(retry_after))

    def _set(self, key: str, ends: float) -> float:
        if ends > self.clock():
            self.until[key] = ends
        else:
            self.until.pop(key, None)
        return ends

    def start(self) -> None:
        """Refresh in the background, when some entry has several deployments to watch."""
        if self._keys:
            self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)

    async def _refresh_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(REFRESH_S)

    async def refresh(self) -> None:
        """One round of the background refresh: the shared cooldown ends, then the gauges."""
        if self._redis is not None and self._keys:
            try:
                async with asyncio.timeout(self._timeout_s):
                    found = await self._redis.mget([_until_key(key) for key in self._keys])
            except Exception as exc:
                self._outage(exc)
            else:
                shared = zip(self._keys, found, strict=True)
                self.until = {key: int(ends) / 1000 for key, ends in shared if ends is not None}
        self._forget_ended()
        if self.on_refresh is not None:
            self.on_refresh()

    def _forget_ended(self) -> None:
        """Drop the cooldowns that have ended: while none is left, routing skips its check."""
        now = self.clock()
        if any(ends <= now for ends in self.until.values()):
            self.until = {key: ends for key, ends in self.until.items() if ends > now}

    def _outage(self, exc: Exception) -> None:
        self._store_outage.failed(
            exc, "cooldown store unreachable (%s); cooldowns are this replica's own meanwhile"
        )


# One hash tag for them all: the refresh's MGET stays on one Redis Cluster node.
def _until_key(key: str) -> str:
    return f"gw:{{cooldowns}}:until:{key}"


def _failures_key(key: str) -> str:
    return f"gw:{{cooldowns}}:failures:{key}"
