"""The log in Redis Streams, so that a reader on any replica can resume any generation.

Per generation, two keys with one hash tag (one Cluster slot): `gw:s:{<id>}:log`, a Stream
whose entry ids are `1-<seq>` (so "after n" is simply the id `1-n`), and `gw:s:{<id>}:meta`, a
hash: owner, model, provider, state (running / ended / gone), the producer's heartbeat
counter `beat`, the remote readers' counter `rbeat`, and `cancel`.

- The producer appends each event with one script call (`XADD … MAXLEN ~`, which also tells it
  whether a cancel was asked), and beats every tick (which renews both keys' TTL and returns
  the cancel flag and `rbeat`). The last event sets state `ended` and the retention TTL. Past
  `resume_max_bytes` it sets state `gone` and stops writing: the stream stays live for local
  readers but is no longer resumable.
- A reader `XREAD BLOCK`s from the last id it delivered (never from `$`), so replay and live
  are one sequence with no gap and no duplicate. Between reads it counts itself in `rbeat` (so
  the producer knows a remote reader is attached) and watches `beat`: a producer silent for
  its `idle_timeout` is dead, and the reader ends with `upstream_unavailable`.

Every call is bounded by `redis_timeout_s` (a blocking read by its block time plus that).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gateway.resume.events import Event, Failure, decode, is_terminal

__all__ = ["Meta", "Mirror", "RedisLog"]

# KEYS log, meta. ARGV owner, model, provider, idle_s, ttl_ms. 0 when the id is taken.
_CREATE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'model', ARGV[2], 'provider', ARGV[3],
           'idle', ARGV[4], 'state', 'running', 'beat', 0, 'rbeat', 0)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""
# KEYS log, meta. ARGV seq, field, value, maxlen, ttl_ms, final. Returns the cancel flag.
_APPEND = """
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '1-' .. ARGV[1], ARGV[2], ARGV[3])
if ARGV[1] == '0' or ARGV[6] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
if ARGV[6] == '1' then redis.call('HSET', KEYS[2], 'state', 'ended') end
return redis.call('HGET', KEYS[2], 'cancel')
"""
# KEYS log, meta. ARGV ttl_ms. Returns {cancel, rbeat}.
_BEAT = """
redis.call('HINCRBY', KEYS[2], 'beat', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return redis.call('HMGET', KEYS[2], 'cancel', 'rbeat')
"""
# KEYS log, meta. Returns {owner, state, model, provider, idle, last entry id or false}.
_LOOKUP = """
local meta = redis.call('HMGET', KEYS[2], 'owner', 'state', 'model', 'provider', 'idle')
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
meta[6] = last[1] and last[1][1] or false
return meta
"""
# KEYS meta. Returns {state, beat} (false when the stream has expired).
_READER_BEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HINCRBY', KEYS[1], 'rbeat', 1)
return redis.call('HMGET', KEYS[1], 'state', 'beat')
"""
# KEYS meta. ARGV owner. 1 cancelled, 0 unknown / ended / already cancelled, -1 not the owner.
_CANCEL = """
local meta = redis.call('HMGET', KEYS[1], 'owner', 'state', 'cancel')
if not meta[1] then return 0 end
if meta[1] ~= ARGV[1] then return -1 end
if meta[2] ~= 'running' or meta[3] then return 0 end
redis.call('HSET', KEYS[1], 'cancel', '1')
return 1
"""


LOST = Failure("unavailable", "the stream's log lost events")
UNREACHABLE = Failure("unavailable", "the resume store is unreachable")


def _keys(stream_id: str) -> list[str]:
    return [f"gw:s:{{{stream_id}}}:log", f"gw:s:{{{stream_id}}}:meta"]


@dataclass(frozen=True, slots=True)
class Meta:
    owner: str
    state: str
    model: str
    provider: str
    idle_s: float
    last_seq: int  # -1: no event yet


class RedisLog:
    def __init__(self, redis: Any, timeout_s: float, retention_s: float, max_bytes: int) -> None:
        self.redis = redis
        self.timeout_s = timeout_s
        self.retention_ms = max(1, int(retention_s * 1000))
        self.max_entries = max_bytes + 16  # each delta has >= 1 byte: the byte cap bites first
        self._create = redis.register_script(_CREATE)
        self._append = redis.register_script(_APPEND)
        self._beat = redis.register_script(_BEAT)
        self._lookup = redis.register_script(_LOOKUP)
        self._reader_beat = redis.register_script(_READER_BEAT)
        self._cancel = redis.register_script(_CANCEL)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        async with asyncio.timeout(self.timeout_s):
            return await script(keys=keys, args=args)

    async def create(
        self, stream_id: str, owner: str, model: str, provider: str, idle_s: float, tick_s: float
    ) -> Mirror | None:
        """The generation's mirror in Redis, or None when the id is taken."""
        args = [owner, model, provider, idle_s, self._running_ttl_ms(idle_s)]
        created = await self._call(self._create, _keys(stream_id), args)
        return Mirror(self, stream_id, idle_s) if created else None

    def _running_ttl_ms(self, idle_s: float) -> int:
        # While running the keys outlive a missed beat or two; a dead producer's expire.
        return self.retention_ms + int(idle_s * 3000)

    async def lookup(self, stream_id: str) -> Meta | None:
        found = await self._call(self._lookup, _keys(stream_id), [])
        owner, state, model, provider, idle, last = found
        if owner is None:
            return None
        last_seq = int(last.split(b"-")[1]) if last else -1
        return Meta(
            owner.decode(), state.decode(), model.decode(), provider.decode(), float(idle), last_seq
        )

    async def cancel(self, stream_id: str, owner: str) -> int:
        return int(await self._call(self._cancel, _keys(stream_id)[1:], [owner]))

    async def follow(self, stream_id: str, after: int, idle_s: float) -> AsyncIterator[list[Event]]:
        """Replay after `after`, then follow live, from the last delivered id; in-band error
        when the producer's heartbeat stops, the stream expires or Redis fails."""
        log, meta = _keys(stream_id)
        loop = asyncio.get_running_loop()
        block_s = tick_for(idle_s)
        last_id, expected = b"1-%d" % after if after >= 0 else b"0-0", after + 1
        beat: Any = None
        beat_at = next_check = loop.time()
        while True:
            try:
                async with asyncio.timeout(block_s + self.timeout_s):
                    reply = await self.redis.xread(
                        {log: last_id}, count=256, block=max(1, int(block_s * 1000))
                    )
                for _, entries in reply or ():
                    batch: list[Event] = []
                    for entry_id, fields in entries:
                        seq = int(entry_id.split(b"-")[1])
                        if seq != expected:
                            batch.append((expected, LOST))
                            yield batch
                            return
                        payload = decode(fields)
                        batch.append((seq, payload))
                        if is_terminal(payload):
                            yield batch
                            return
                        last_id, expected = entry_id, seq + 1
                    yield batch
                now = loop.time()
                if now < next_check:
                    continue
                next_check = now + block_s
                state = await self._call(self._reader_beat, [meta], [])
            except Exception:
                yield [(expected, UNREACHABLE)]
                return
            if not state or state[0] == b"gone":
                yield [(expected, Failure("unavailable", "the stream is no longer resumable"))]
                return
            if state[1] != beat:
                beat, beat_at = state[1], now
            elif now - beat_at > idle_s:
                message = f"the replica running this stream stopped (no heartbeat for {idle_s:g} s)"
                yield [(expected, Failure("upstream_unavailable", message))]
                return


def tick_for(idle_s: float, orphan_s: float | None = None) -> float:
    """How often producers beat and remote readers look: well inside the time-outs."""
    limit = idle_s if orphan_s is None else min(idle_s, orphan_s)
    return min(1.0, max(0.05, limit / 4))


class Mirror:
    """One generation's writes to its Redis Stream."""

    __slots__ = ("idle_s", "keys", "log", "rbeat")

    def __init__(self, log: RedisLog, stream_id: str, idle_s: float) -> None:
        self.log = log
        self.keys = _keys(stream_id)
        self.idle_s = idle_s
        self.rbeat: Any = None

    async def append(self, seq: int, field: bytes, value: bytes, final: bool) -> bool:
        """Write one event; True when a cancel was asked for (from any replica)."""
        log = self.log
        args = [seq, field, value, log.max_entries, log.retention_ms, int(final)]
        return bool(await log._call(log._append, self.keys, args))

    async def beat(self) -> tuple[bool, bool]:
        """Keep the keys alive; (cancel asked, a remote reader looked since the last beat)."""
        ttl = self.log._running_ttl_ms(self.idle_s)
        cancel, rbeat = await self.log._call(self.log._beat, self.keys, [ttl])
        seen, self.rbeat = rbeat != self.rbeat and self.rbeat is not None, rbeat
        return bool(cancel), seen

    async def give_up(self) -> None:
        """Past the byte cap: no longer resumable (local readers go on from memory)."""
        async with asyncio.timeout(self.log.timeout_s):
            await self.log.redis.hset(self.keys[1], "state", "gone")
