"""What the process keeps after a stream has ended, under one byte budget (SPEC §6).

Ended resumable streams stay readable for their retention time (`resume_retention_s`), so
that a client that reconnects late still gets the rest. Without a budget, what they hold is
the rate times the retention: at a few hundred answers a second, hundreds of MiB that grow
with the load, not with anything the operator chose. `Retained` is the one owner of those
bytes: every kind of thing kept after its stream ended (`"stream"`: an ended stream's events;
stored responses are meant to join under their own kind) registers here with its size, and
when the total passes `max_bytes` the oldest entries, of any kind, are forgotten first. Their
owner is told (`Forget`), and from then on the entry answers as an expired one would.

    retained = Retained(max_bytes, metrics)
    retained.register("stream", forget)   # forget(key) drops the owner's copy
    retained.keep("stream", key, size)    # may evict older entries at once
    retained.drop("stream", key)          # the owner expired it (its retention is over)

The entries are an `OrderedDict` of `(kind, key) -> size`: tuples of strings and ints, which
the garbage collector stops tracking, so a busy process's tens of thousands of entries cost
no collection time. Eviction is O(1) per entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from gateway.metrics import Metrics

__all__ = ["Forget", "Retained"]

Forget = Callable[[str], None]


class Retained:
    def __init__(self, max_bytes: int, metrics: Metrics) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._owners: dict[str, Forget] = {}
        self._gauge = metrics.retained_bytes
        self._evictions = metrics.retained_evictions

    def register(self, kind: str, forget: Forget) -> None:
        """`forget(key)` is called for each of `kind`'s entries the budget evicts."""
        self._owners[kind] = forget

    def __len__(self) -> int:
        return len(self._entries)

    def keep(self, kind: str, key: str, size: int) -> None:
        """Count an entry its owner now holds, newest last; evict the oldest past the budget
        (this one too, when it alone is over the budget)."""
        entry = (kind, key)
        previous = self._entries.pop(entry, None)
        if previous is not None:
            self.bytes -= previous
        self._entries[entry] = size
        self.bytes += size
        while self.bytes > self.max_bytes and self._entries:
            (old_kind, old_key), old_size = self._entries.popitem(last=False)
            self.bytes -= old_size
            self._owners[old_kind](old_key)
            self._evictions.labels(old_kind).inc()
        self._gauge.set(self.bytes)

    def drop(self, kind: str, key: str) -> None:
        """The owner let go of an entry (its retention time is over)."""
        size = self._entries.pop((kind, key), None)
        if size is not None:
            self.bytes -= size
            self._gauge.set(self.bytes)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
        self._gauge.set(0)
