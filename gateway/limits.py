"""Per-key limits (SPEC §7): requests per minute, tokens per minute, concurrent streams.

Admission happens once per request, before anything reaches an upstream, and is one atomic
step in the store: refuse if the key's token window is already over its limit or all its
stream slots are taken, else count the request in its one-minute window (fixed windows) and
take a slot. A slot is a lease with an expiry, held until the stream ends whatever ends it;
a per-process keeper renews the leases of live streams, so the slots of a replica that died
come back when their leases expire. Tokens are charged while a stream runs, as an estimate
(one token per relayed delta, every `CHARGE_EVERY` deltas), and settled when it ends against the
usage the provider reported (or the estimate, when it reported none).

Two stores share the contract: in memory (one process) and Redis (several replicas, one Lua
script per admission). Every Redis call is bounded by `redis_timeout_s`, never retried, and a
failure follows `redis_failure`: "closed" refuses with 503, "open" admits; either way it is
logged (at most once a minute) and counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.auth import GatewayKey
from gateway.errors import RateLimited, Unavailable
from gateway.metrics import Metrics

__all__ = ["Lease", "Limiter", "MemoryStore", "RedisStore"]

log = logging.getLogger("gateway.limits")
WINDOW_S = 60
CHARGE_EVERY = 32  # deltas between running charges of a tokens-per-minute key


@dataclass(slots=True, eq=False)  # compared and hashed by identity
class Lease:
    key: GatewayKey
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    holds_slot: bool = False
    charged: int = 0  # tokens already charged while the stream ran
    next_charge: int = CHARGE_EVERY  # the delta count at which to charge again


class Store(Protocol):
    async def admit(self, key: GatewayKey, lease: Lease, ttl_s: float) -> float | None:
        """Admit (None) or refuse with the seconds to wait."""

    async def release(self, lease: Lease) -> None: ...

    async def charge(self, key: GatewayKey, tokens: int) -> None: ...

    async def renew(self, leases: list[Lease], ttl_s: float) -> None: ...

    async def aclose(self) -> None: ...


def _window() -> tuple[int, float]:
    now = time.time()
    return int(now // WINDOW_S), WINDOW_S - (now % WINDOW_S)


class MemoryStore:
    """One process's limits (the default)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.tokens: dict[tuple[str, int], int] = defaultdict(int)
        self.slots: dict[str, set[str]] = defaultdict(set)

    async def admit(self, key: GatewayKey, lease: Lease, ttl_s: float) -> float | None:
        window, left = _window()
        self._forget_old(window)
        if key.tpm is not None and self.tokens[(key.name, window)] >= key.tpm:
            return left
        slots = key.max_concurrent_streams
        if slots is not None and len(self.slots[key.name]) >= slots:
            return 1.0
        if key.rpm is not None:
            self.requests[(key.name, window)] += 1
            if self.requests[(key.name, window)] > key.rpm:
                return left
        if key.max_concurrent_streams is not None:
            self.slots[key.name].add(lease.id)
            lease.holds_slot = True
        return None

    def _forget_old(self, window: int) -> None:
        for table in (self.requests, self.tokens):
            for stale in [k for k in table if k[1] < window]:
                del table[stale]

    async def release(self, lease: Lease) -> None:
        self.slots[lease.key.name].discard(lease.id)

    async def charge(self, key: GatewayKey, tokens: int) -> None:
        self.tokens[(key.name, _window()[0])] += tokens

    async def renew(self, leases: list[Lease], ttl_s: float) -> None:
        return None

    async def aclose(self) -> None:
        return None


# KEYS: requests counter, tokens counter, slots zset.
# ARGV: now_ms, window_ms, rpm, tpm, max_concurrent (0 = no limit), lease id, lease expiry_ms.
# Returns {1, 0} when admitted, {0, retry_ms} when refused.
_ADMIT = """
local now = tonumber(ARGV[1])
local tpm, slots_max, rpm = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[3])
if tpm > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= tpm then
  return {0, redis.call('PTTL', KEYS[2])}
end
if slots_max > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= slots_max then return {0, 1000} end
end
if rpm > 0 then
  local count = redis.call('INCR', KEYS[1])
  if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  if count > rpm then return {0, redis.call('PTTL', KEYS[1])} end
end
if slots_max > 0 then
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[7]) - now)
end
return {1, 0}
"""


class RedisStore:
    """Limits shared by every replica through one Redis."""

    def __init__(self, redis: Any, timeout_s: float) -> None:
        self.redis = redis  # shared with the resumable-stream log (gateway.redis_client)
        self.timeout_s = timeout_s
        self._admit = self.redis.register_script(_ADMIT)

    @staticmethod
    def _keys(name: str, window: int) -> list[str]:
        # One hash tag per key name: a Redis Cluster keeps the script's keys in one slot.
        return [f"gw:{{{name}}}:rpm:{window}", f"gw:{{{name}}}:tpm:{window}", _slots(name)]

    async def admit(self, key: GatewayKey, lease: Lease, ttl_s: float) -> float | None:
        window, _ = _window()
        now_ms = int(time.time() * 1000)
        args: list[int | str] = [
            now_ms,
            WINDOW_S * 1000,
            key.rpm or 0,
            key.tpm or 0,
            key.max_concurrent_streams or 0,
            lease.id,
            now_ms + int(ttl_s * 1000),
        ]
        async with asyncio.timeout(self.timeout_s):
            admitted, retry_ms = await self._admit(keys=self._keys(key.name, window), args=args)
        if admitted:
            lease.holds_slot = key.max_concurrent_streams is not None
            return None
        return max(int(retry_ms), 0) / 1000

    async def release(self, lease: Lease) -> None:
        async with asyncio.timeout(self.timeout_s):
            await self.redis.zrem(_slots(lease.key.name), lease.id)

    async def charge(self, key: GatewayKey, tokens: int) -> None:
        name = self._keys(key.name, _window()[0])[1]
        async with asyncio.timeout(self.timeout_s):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incrby(name, tokens)
                pipe.pexpire(name, WINDOW_S * 1000)
                await pipe.execute()

    async def renew(self, leases: list[Lease], ttl_s: float) -> None:
        expiry = int((time.time() + ttl_s) * 1000)
        async with asyncio.timeout(self.timeout_s * 4):
            async with self.redis.pipeline(transaction=False) as pipe:
                for lease in leases:
                    pipe.zadd(_slots(lease.key.name), {lease.id: expiry}, xx=True)
                await pipe.execute()

    async def aclose(self) -> None:
        return None  # the shared client is closed by its owner, the app's lifespan


def _slots(name: str) -> str:
    return f"gw:{{{name}}}:slots"


class Limiter:
    def __init__(self, store: Store, failure: str, ttl_s: float, metrics: Metrics) -> None:
        self.store = store
        self.fail_open = failure == "open"
        self.ttl_s = ttl_s
        self.metrics = metrics
        self.live: set[Lease] = set()
        self._last_outage_log = -math.inf
        self._keeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._keeper = asyncio.ensure_future(self._keep_leases())

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await self.store.aclose()

    async def admit(self, key: GatewayKey | None) -> Lease | None:
        """Admit a request for `key` or raise RateLimited / Unavailable."""
        if key is None or (
            key.rpm is None and key.tpm is None and key.max_concurrent_streams is None
        ):
            return None
        lease = Lease(key)
        try:
            wait = await self.store.admit(key, lease, self.ttl_s)
        except Exception as exc:
            self._outage(exc)
            return None
        if wait is not None:
            self.metrics.rate_limited.labels(key.name).inc()
            retry = max(1, min(WINDOW_S, math.ceil(wait)))
            raise RateLimited(f"key {key.name!r} is over its limit", retry_after=retry)
        if lease.holds_slot:
            self.live.add(lease)
        return lease

    async def running(self, lease: Lease, deltas: int) -> None:
        """A tokens-per-minute key's stream has relayed `deltas`: charge the estimate so far, so
        that a long stream holds back the key's next requests while it runs."""
        lease.next_charge = deltas + CHARGE_EVERY
        if lease.key.tpm is None:
            return
        try:
            await self.store.charge(lease.key, deltas - lease.charged)
        except Exception as exc:
            self._outage(exc, refuse=False)
            return
        lease.charged = deltas

    async def finish(self, lease: Lease | None, tokens: int) -> None:
        """The stream ended: give its slot back; settle its tokens against what was charged."""
        if lease is None:
            return
        self.live.discard(lease)
        try:
            if lease.holds_slot:
                await self.store.release(lease)
            if lease.key.tpm is not None and tokens != lease.charged:
                await self.store.charge(lease.key, tokens - lease.charged)
        except Exception as exc:
            self._outage(exc, refuse=False)

    def _outage(self, exc: Exception, refuse: bool = True) -> None:
        self.metrics.redis_failures.inc()
        now = time.monotonic()
        if now - self._last_outage_log >= 60:
            self._last_outage_log = now
            log.warning(
                "limit store unreachable (%s); failing %s",
                type(exc).__name__,
                "open" if self.fail_open else "closed",
            )
        if refuse and not self.fail_open:
            raise Unavailable("the rate-limit store is unreachable") from None

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            if self.live:
                try:
                    await self.store.renew(list(self.live), self.ttl_s)
                except Exception as exc:
                    self._outage(exc, refuse=False)


def build_store(redis: Any, timeout_s: float) -> Any:
    """The Redis store on the shared client, else (no redis_url) the in-memory one."""
    return RedisStore(redis, timeout_s) if redis is not None else MemoryStore()
