"""Per-key limits (SPEC §7): requests per minute, tokens per minute, concurrent streams, and
the spend budget per UTC day or month.

Admission happens once per request, before anything reaches an upstream, and is one atomic
step in the store: refuse if the key's token window is already over its limit or all its
stream slots are taken, else count the request in its one-minute window (fixed windows) and
take a slot. A slot is a lease with an expiry, held until the stream ends whatever ends it;
a per-process keeper renews the leases of live streams, so the slots of a replica that died
come back when their leases expire. Tokens are charged while a stream runs, as an estimate
(one token per relayed delta, every `CHARGE_EVERY` deltas), and settled when it ends against the
usage the provider reported (or the estimate, when it reported none). A stream's spend is
added to its key's period when it ends (gateway.spend prices it), so a stream is never cut for
its budget: once the period's spend reaches the budget, the key's *next* requests are refused.

Two stores share the contract: in memory (one process) and Redis (several replicas, one Lua
script per admission). Every Redis call is bounded by `redis_timeout_s`, never retried, and a
failure follows `redis_failure`: "closed" refuses with 503, "open" admits; either way it is
logged (at most once a minute) and counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway import ids
from gateway.auth import GatewayKey
from gateway.errors import BudgetExceeded, RateLimited, Unavailable
from gateway.metrics import Metrics
from gateway.redis_client import Outage
from gateway.spend import NANO, period_of

__all__ = ["Clock", "Lease", "Limiter", "MemoryStore", "RedisStore"]

log = logging.getLogger("gateway.limits")
WINDOW_S = 60
CHARGE_EVERY = 32  # deltas between running charges of a tokens-per-minute key
NEVER_CHARGE = 1 << 62

# Wall-clock seconds since the epoch: windows are aligned to the minute, so that every replica
# agrees on which window a request falls in. Injected, so that tests control the windows.
Clock = Callable[[], float]


@dataclass(slots=True, eq=False)  # compared and hashed by identity
class Lease:
    key: GatewayKey
    id: str = field(default_factory=lambda: ids.token_hex(8))
    holds_slot: bool = False
    charged: int = 0  # tokens already charged while the stream ran
    next_charge: int = CHARGE_EVERY  # the delta count at which to charge again

    def __post_init__(self) -> None:
        if self.key.tpm is None:  # nothing to charge as it runs: never call `running`
            self.next_charge = NEVER_CHARGE


# The limits, as a 429 names them (SPEC §7).
RPM, TPM, CONCURRENCY = "requests per minute", "tokens per minute", "concurrent streams"
BUDGET = "budget"
Refusal = tuple[str, float]  # which limit was hit, and the seconds to wait


class Store(Protocol):
    async def admit(self, key: GatewayKey, lease: Lease, ttl_s: float) -> Refusal | None:
        """Admit (None) or refuse, naming the limit and the seconds to wait."""

    async def release(self, lease: Lease) -> None: ...

    async def charge(self, key: GatewayKey, tokens: int) -> None: ...

    async def spend(self, key: GatewayKey, nano: int) -> None:
        """Add to the key's spend in the current budget period (nano-units)."""

    async def renew(self, leases: list[Lease], ttl_s: float) -> None: ...

    async def aclose(self) -> None: ...


def _window(now: float) -> tuple[int, float]:
    """The window `now` falls in, and the seconds left in it."""
    return int(now // WINDOW_S), WINDOW_S - (now % WINDOW_S)


class MemoryStore:
    """One process's limits (the default)."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.tokens: dict[tuple[str, int], int] = defaultdict(int)
        self.slots: dict[str, set[str]] = defaultdict(set)
        self.spent: dict[str, tuple[str, int]] = {}  # key name -> (period, nano-units)

    async def admit(self, key: GatewayKey, lease: Lease, ttl_s: float) -> Refusal | None:
        window, left = _window(self.clock())
        self._forget_old(window)
        if key.budget is not None:
            period, period_left = period_of(self.clock(), key.budget_period)
            spent = self.spent.get(key.name)
            if spent is not None and spent[0] == period and spent[1] >= _nano(key.budget):
                return BUDGET, period_left
        if key.tpm is not None and self.tokens[(key.name, window)] >= key.tpm:
            return TPM, left
        slots = key.max_concurrent_streams
        if slots is not None and len(self.slots[key.name]) >= slots:
            return CONCURRENCY, 1.0
        if key.rpm is not None:
            self.requests[(key.name, window)] += 1
            if self.requests[(key.name, window)] > key.rpm:
                return RPM, left
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
        self.tokens[(key.name, _window(self.clock())[0])] += tokens

    async def spend(self, key: GatewayKey, nano: int) -> None:
        period = period_of(self.clock(), key.budget_period)[0]
        before = self.spent.get(key.name)
        total = before[1] if before is not None and before[0] == period else 0
        self.spent[key.name] = (period, total + nano)

    async def renew(self, leases: list[Lease], ttl_s: float) -> None:
        return None

    async def aclose(self) -> None:
        return None


# KEYS: requests counter, tokens counter, slots zset, spend counter of the budget period.
# ARGV: now_ms, ms left in the window (the counters' expiry), rpm, tpm, max_concurrent
# (0 = no limit), lease id, lease expiry_ms, budget in nano-units (0 = none), ms left in the
# budget period.
# Returns {1, 0} when admitted, {0, retry_ms, limit} when refused (limit: "budget", "tpm",
# "slots", "rpm"; retry_ms for a window or period: the time left in it).
_ADMIT = """
local now = tonumber(ARGV[1])
local tpm, slots_max, rpm = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[3])
local budget = tonumber(ARGV[8])
if budget > 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= budget then
  return {0, tonumber(ARGV[9]), 'budget'}
end
if tpm > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= tpm then
  return {0, tonumber(ARGV[2]), 'tpm'}
end
if slots_max > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= slots_max then return {0, 1000, 'slots'} end
end
if rpm > 0 then
  local count = redis.call('INCR', KEYS[1])
  if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  if count > rpm then return {0, tonumber(ARGV[2]), 'rpm'} end
end
if slots_max > 0 then
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[7]) - now)
end
return {1, 0}
"""


_REDIS_LIMITS = {"budget": BUDGET, "tpm": TPM, "slots": CONCURRENCY, "rpm": RPM}


class RedisStore:
    """Limits shared by every replica through one Redis."""

    def __init__(self, redis: Any, timeout_s: float, clock: Clock = time.time) -> None:
        self.redis = redis  # shared with the resumable-stream log (gateway.redis_client)
        self.timeout_s = timeout_s
        self.clock = clock
        self._admit = self.redis.register_script(_ADMIT)

    @staticmethod
    def _keys(name: str, window: int) -> list[str]:
        # One hash tag per key name: a Redis Cluster keeps the script's keys in one slot.
        return [f"gw:{{{name}}}:rpm:{window}", f"gw:{{{name}}}:tpm:{window}", _slots(name)]

    @staticmethod
    def _spend_key(name: str, period: str) -> str:
        return f"gw:{{{name}}}:spend:{period}"

    async def admit(self, key: GatewayKey, lease: Lease, ttl_s: float) -> Refusal | None:
        now = self.clock()
        window, left = _window(now)
        period, period_left = period_of(now, key.budget_period)
        now_ms = int(now * 1000)
        args: list[int | str] = [
            now_ms,
            _ms(left),
            key.rpm or 0,
            key.tpm or 0,
            key.max_concurrent_streams or 0,
            lease.id,
            now_ms + int(ttl_s * 1000),
            _nano(key.budget) if key.budget is not None else 0,
            _ms(period_left),
        ]
        keys = [*self._keys(key.name, window), self._spend_key(key.name, period)]
        async with asyncio.timeout(self.timeout_s):
            admitted, retry_ms, *limit = await self._admit(keys=keys, args=args)
        if admitted:
            lease.holds_slot = key.max_concurrent_streams is not None
            return None
        return _REDIS_LIMITS[limit[0].decode()], max(int(retry_ms), 0) / 1000

    async def release(self, lease: Lease) -> None:
        async with asyncio.timeout(self.timeout_s):
            await self.redis.zrem(_slots(lease.key.name), lease.id)

    async def charge(self, key: GatewayKey, tokens: int) -> None:
        window, left = _window(self.clock())
        name = self._keys(key.name, window)[1]
        async with asyncio.timeout(self.timeout_s):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incrby(name, tokens)
                pipe.pexpire(name, _ms(left))
                await pipe.execute()

    async def spend(self, key: GatewayKey, nano: int) -> None:
        period, left = period_of(self.clock(), key.budget_period)
        name = self._spend_key(key.name, period)
        async with asyncio.timeout(self.timeout_s):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incrby(name, nano)
                # Kept an hour past the period's end: a replica whose clock lags still adds
                # to the right period, and nothing outlives its use.
                pipe.pexpire(name, _ms(left + 3600))
                await pipe.execute()

    async def renew(self, leases: list[Lease], ttl_s: float) -> None:
        expiry = int((self.clock() + ttl_s) * 1000)
        async with asyncio.timeout(self.timeout_s * 4):
            async with self.redis.pipeline(transaction=False) as pipe:
                for lease in leases:
                    pipe.zadd(_slots(lease.key.name), {lease.id: expiry}, xx=True)
                await pipe.execute()

    async def aclose(self) -> None:
        return None  # the shared client is closed by its owner, the app's lifespan


def _slots(name: str) -> str:
    return f"gw:{{{name}}}:slots"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _nano(amount: float) -> int:
    return round(amount * NANO)


class Limiter:
    def __init__(self, store: Store, failure: str, ttl_s: float, metrics: Metrics) -> None:
        self.store = store
        self.fail_open = failure == "open"
        self.ttl_s = ttl_s
        self.metrics = metrics
        self.live: set[Lease] = set()
        self._store_outage = Outage(log, metrics.redis_failures)
        self._keeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._keeper = asyncio.ensure_future(self._keep_leases())

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await self.store.aclose()

    async def admit(self, key: GatewayKey | None) -> Lease | None:
        """Admit a request for `key` or raise RateLimited / BudgetExceeded / Unavailable.

        Every key's request gets a lease (its spend is the key's), even when nothing limits it;
        only a key with limits or a budget asks the store."""
        if key is None:
            return None
        lease = Lease(key)
        if (
            key.rpm is None
            and key.tpm is None
            and key.max_concurrent_streams is None
            and key.budget is None
        ):
            return lease
        try:
            refusal = await self.store.admit(key, lease, self.ttl_s)
        except Exception as exc:
            self._outage(exc)
            return lease
        if refusal is not None:
            self.metrics.rate_limited.labels(key.name).inc()
            limit, wait = refusal
            if limit == BUDGET:
                raise _over_budget(key, max(1, math.ceil(wait)))
            retry = max(1, min(WINDOW_S, math.ceil(wait)))
            raise _refused(key, limit, retry)
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

    async def finish(self, lease: Lease | None, tokens: int, spend_nano: int = 0) -> None:
        """The stream ended: give its slot back; settle its tokens against what was charged;
        add its spend to a budgeted key's period."""
        if lease is None:
            return
        self.live.discard(lease)
        # Separately: a failed release must not skip the charge, nor a failed charge the
        # release (a slot Redis could not free comes back when its lease expires).
        if lease.holds_slot:
            await self._quietly(self.store.release(lease))
        if lease.key.tpm is not None and tokens != lease.charged:
            await self._quietly(self.store.charge(lease.key, tokens - lease.charged))
        if lease.key.budget is not None and spend_nano > 0:
            await self._quietly(self.store.spend(lease.key, spend_nano))

    async def _quietly(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as exc:
            self._outage(exc, refuse=False)

    def _outage(self, exc: Exception, refuse: bool = True) -> None:
        mode = "open" if self.fail_open else "closed"
        self._store_outage.failed(exc, "limit store unreachable (%s); failing %s", mode)
        if refuse and not self.fail_open:
            raise Unavailable("the rate-limit store is unreachable") from None

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            await self.renew_live()

    async def renew_live(self) -> None:
        """One round of the keeper: extend the leases of the streams still running."""
        if self.live:
            try:
                await self.store.renew(list(self.live), self.ttl_s)
            except Exception as exc:
                self._outage(exc, refuse=False)


def _refused(key: GatewayKey, limit: str, retry_s: int) -> RateLimited:
    """The 429: which limit, and OpenAI's x-ratelimit-* headers for the two it shares."""
    value = {RPM: key.rpm, TPM: key.tpm, CONCURRENCY: key.max_concurrent_streams}[limit]
    message = f"key {key.name!r} reached its limit of {value} {limit}; retry in {retry_s}s"
    headers = {}
    if limit in (RPM, TPM):
        kind = "requests" if limit == RPM else "tokens"
        headers = {
            f"x-ratelimit-limit-{kind}": str(value),
            f"x-ratelimit-remaining-{kind}": "0",
            f"x-ratelimit-reset-{kind}": f"{retry_s}s",
        }
    return RateLimited(message, retry_after=retry_s, extra_headers=headers)


def _over_budget(key: GatewayKey, retry_s: int) -> BudgetExceeded:
    """The 429 of a spent budget: which budget, and Retry-After until its period resets."""
    message = (
        f"key {key.name!r} reached its budget of {key.budget:g} per {key.budget_period} "
        f"(UTC); it resets in {retry_s}s"
    )
    return BudgetExceeded(message, retry_after=retry_s)


def build_store(redis: Any, timeout_s: float, clock: Clock = time.time) -> Any:
    """The Redis store on the shared client, else (no redis_url) the in-memory one."""
    return RedisStore(redis, timeout_s, clock) if redis is not None else MemoryStore(clock)
