"""What the process keeps after a stream has ended, under one byte budget (SPEC §6).

Ended resumable streams stay readable for their retention time (`resume_retention_s`), so
that a client that reconnects late still gets the rest. Without a budget, what they hold is
the rate times the retention: at a few hundred answers a second, hundreds of MiB that grow
with the load, not with anything the operator chose. `Retained` is the one owner of those
bytes, and it holds them itself: every kind of thing kept after its stream ended (`"stream"`:
an ended stream's events; stored responses are meant to join under their own kind) registers
with its retention time, hands its entries over as bytes and reads them back by key. An entry
evicted by the budget, or past its retention, reads as None: its owner keeps nothing of it.

    retained = Retained(max_bytes, metrics)
    retained.register("stream", retention_s)
    retained.keep("stream", key, [b"...", b"..."])  # False: not kept (larger than the ring)
    retained.get("stream", key)                     # its bytes, or None (evicted, expired)
    retained.drop("stream", key)                    # the owner lets go of it before its time

Why a ring. Kept as one `bytes` object each, entries of all sizes freed as new ones came made
the allocator hold about 1.25 times what was counted under a soak's churn (heap fragmentation;
docs/PERFORMANCE.md): a budget that bounds only what it counts is not a bound. Here the bytes
go into one buffer of a fixed size (`Ring`), written in turn, each new entry overwriting the
oldest: nothing is freed or allocated per entry, so there is nothing to fragment. Each entry
also costs a few small objects outside the ring (its position, key and expiry, its slots in
the index and the ring's queue: `ENTRY_OVERHEAD`, measured), and their number is capped by
the budget's other share: the ring's size plus the entries' overhead is at most `max_bytes`.
"""

from __future__ import annotations

import mmap
import time
from collections import deque
from collections.abc import Callable, Sequence

from gateway.metrics import Metrics

__all__ = ["ENTRY_OVERHEAD", "Entry", "Retained", "Ring"]

# What an entry costs outside the ring: its `Entry` tuple with two ints and a float, its key,
# its slots in the kind's index (a dict, which under insert/delete churn sits at up to three
# slots per entry) and in the ring's deque. Measured as the peak RSS of 1,500,000 entries kept
# in turn under a cap of 100,000 (stream ids as keys), less the ring: 415 bytes each (299
# before any churn; tracemalloc, which counts no allocator overhead, says about 320).
ENTRY_OVERHEAD = 448
# The share of the budget for the entries' overhead, the rest being the ring: room for
# budget / 8 / 448 entries (74,898 at the default 256 MiB), and a ring filled by entries of
# 3 KiB on average when both fill together. Real answers (hundreds of deltas, a few KiB)
# fill the ring first; a budget of short answers is bounded by its count of entries.
ENTRY_SHARE = 8

# (start, end, kind, key, expires): where an entry's bytes are in the ring, whose they are,
# and when its retention is over (on the `Retained` clock). Ints, strings and a float only, so
# the collector stops tracking the tuple: a busy process's tens of thousands cost no
# collection time.
Entry = tuple[int, int, str, str, float]


class Ring:
    """A fixed buffer that entries are written into in turn, each contiguous, oldest first.

    `place` says where the next entry's bytes go: at the head, or at 0 when they do not fit
    before the end (the end's remainder is skipped, and whatever lay there is older than
    anything at the start) or fit before the oldest entry. `overwrites` says whether writing
    there reaches an entry: the caller forgets those, oldest first, before `write`. The
    buffer is an anonymous mapping: the OS gives it pages as they are first written, so a
    budget that is never used costs nothing, and one that is costs at most its size."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.head = 0  # where the last entry ended
        self.entries: deque[Entry] = deque()  # as written: the oldest first
        self._buffer = mmap.mmap(-1, size) if size > 0 else None

    def place(self, size: int) -> int | None:
        """Where `size` bytes go next; None when they are more than the whole ring.

        Back to 0 as soon as they fit there before the oldest entry, even with room left at
        the head, when the entries lie in one run (the oldest not after the newest): when
        something else than bytes limits the entries (their count, their retention time),
        the ring's resident pages stay those of what it holds, not the whole ring."""
        if size > self.size:
            return None
        entries = self.entries
        if not entries or size <= entries[0][0] <= entries[-1][0]:
            return 0
        return self.head if self.head + size <= self.size else 0

    def overwrites(self, entry: Entry, start: int, size: int) -> bool:
        """Whether writing `size` bytes at `start` (from `place`) reaches `entry`: it lies
        where they go, or in the end of the ring they skip."""
        wrapped = start < self.head
        return (entry[0] < start + size and entry[1] > start) or (wrapped and entry[0] >= self.head)

    def write(self, start: int, parts: Sequence[bytes], entry: Entry) -> None:
        """Write an entry's parts at `start` (from `place`, once what they overwrite is gone)."""
        assert self._buffer is not None  # a ring of size 0 places nothing
        position = start
        for part in parts:
            end = position + len(part)
            self._buffer[position:end] = part
            position = end
        self.head = position
        self.entries.append(entry)

    def read(self, entry: Entry) -> bytes:
        assert self._buffer is not None
        return self._buffer[entry[0] : entry[1]]


class Retained:
    def __init__(
        self, max_bytes: int, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_bytes // ENTRY_SHARE // ENTRY_OVERHEAD
        self.ring = Ring(max_bytes - self.max_entries * ENTRY_OVERHEAD if self.max_entries else 0)
        self.bytes = 0  # what the entries still readable hold: their bytes and overhead
        self._held: dict[str, dict[str, Entry]] = {}  # per kind: key -> entry
        self._retention_s: dict[str, float] = {}
        self._clock = clock
        self._gauge = metrics.retained_bytes
        self._evictions = metrics.retained_evictions

    def register(self, kind: str, retention_s: float) -> None:
        """`kind`'s entries are readable for `retention_s` after they are kept, at most."""
        self._held[kind] = {}
        self._retention_s[kind] = retention_s

    def __len__(self) -> int:
        return sum(map(len, self._held.values()))

    def keep(self, kind: str, key: str, parts: Sequence[bytes]) -> bool:
        """Keep `parts`, together, as `kind`'s entry `key` (replacing one of that key),
        forgetting the oldest entries it needs the room of. False when it is not kept: it
        is larger than the whole ring (or the budget is 0), and so it is evicted at once."""
        size = sum(map(len, parts))
        if not size:  # it would have no place of its own to be overwritten from
            raise ValueError("an empty entry")
        self.drop(kind, key)
        now = self._clock()
        self._expire(now)
        ring = self.ring
        start = ring.place(size) if self.max_entries else None
        if start is None:
            self._evictions.labels(kind).inc()
            return False
        entries = ring.entries
        while entries and (
            len(entries) >= self.max_entries or ring.overwrites(entries[0], start, size)
        ):
            self._forget(entries.popleft(), evicted=True)
        entry = (start, start + size, kind, key, now + self._retention_s[kind])
        ring.write(start, parts, entry)
        self._held[kind][key] = entry
        self.bytes += size + ENTRY_OVERHEAD
        self._gauge.set(self.bytes)
        return True

    def get(self, kind: str, key: str) -> bytes | None:
        """The entry's bytes (a copy); None when it was never kept, or is forgotten."""
        entry = self._live(kind, key)
        return None if entry is None else self.ring.read(entry)

    def holds(self, kind: str, key: str) -> bool:
        return self._live(kind, key) is not None

    def drop(self, kind: str, key: str) -> None:
        """The owner lets go of an entry before its time (its bytes are overwritten in turn)."""
        entry = self._held[kind].pop(key, None)
        if entry is not None:
            self.bytes -= entry[1] - entry[0] + ENTRY_OVERHEAD
            self._gauge.set(self.bytes)

    def _live(self, kind: str, key: str) -> Entry | None:
        entry = self._held[kind].get(key)
        if entry is None or entry[4] <= self._clock():
            return None
        return entry

    def _expire(self, now: float) -> None:
        """Forget the oldest entries whose retention is over (and those already dropped)."""
        entries = self.ring.entries
        while entries and (entries[0][4] <= now or not self._is_held(entries[0])):
            self._forget(entries.popleft(), evicted=False)

    def _is_held(self, entry: Entry) -> bool:
        return self._held[entry[2]].get(entry[3]) is entry

    def _forget(self, entry: Entry, evicted: bool) -> None:
        if self._is_held(entry):
            self.drop(entry[2], entry[3])
            if evicted:
                self._evictions.labels(entry[2]).inc()
