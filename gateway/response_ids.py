"""Stored Responses API responses: which key made each, on which provider, and for the
translated path their conversation (SPEC §4.10).

On the native path the upstream holds a response's state; the gateway only has to know who
may continue it (`previous_response_id`) or read it (`GET /v1/responses/{id}`), and which
provider to ask. On the translated path the gateway is the state: the response's input and
output items, as JSON, so that `previous_response_id` rebuilds the whole conversation. Each
response is remembered here with its owner (the gateway key's name, "" when the gateway is
open) for `responses_retention_s`. An id that is unknown, expired or another key's is not
found, and the route answers as OpenAI does.

In this process the entries live in a dict under the shared retention budget
(`gateway.retention`, kind `"response"`): past the budget the oldest are forgotten first, and
expired ones are dropped as new ones arrive (the retention is the same for all, so the order
they were made in is the order they expire in). With Redis, each id is also written there
(`SET ... EX`), so that any replica finds it: the write is started when the id is seen and
not waited for (a client learns the id from the same stream, and answers later), and a
lookup that misses here asks Redis. A Redis failure is logged; the lookup then answers from
this process's entries alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.retention import Retained

__all__ = ["ENTRY_OVERHEAD", "KIND", "ResponseIds", "Stored"]

log = logging.getLogger("gateway.responses")

KIND = "response"
# What one entry costs besides its strings' characters: the dict slot, the value tuple, three
# str headers, the float, the expiry queue's slot (sys.getsizeof, rounded up).
ENTRY_OVERHEAD = 400


@dataclass(frozen=True, slots=True)
class Stored:
    provider: str  # the provider that made it (GET asks it)
    items: bytes  # the conversation's items as a JSON list (translated); b"" when native


def _redis_key(response_id: str) -> str:
    digest = hashlib.sha256(response_id.encode()).hexdigest()[:40]
    return f"gw:resp:{{{digest}}}"


class ResponseIds:
    def __init__(
        self,
        retained: Retained,
        retention_s: float,
        redis: Any | None = None,
        timeout_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: dict[str, tuple[str, Stored, float]] = {}  # id -> owner, stored, expiry
        self._expiry: deque[tuple[float, str]] = deque()
        self._retained = retained
        self._retention_s = retention_s
        self._redis = redis
        self._timeout_s = timeout_s
        self._clock = clock
        self._writes: set[asyncio.Task[None]] = set()
        retained.register(KIND, self._forget)

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, response_id: str, owner: str, provider: str, items: bytes = b"") -> None:
        """`owner` made `response_id` on `provider` (called from the stream: no waiting)."""
        now = self._clock()
        self._expire(now)
        expires = now + self._retention_s
        stored = Stored(provider, items)
        self._entries[response_id] = (owner, stored, expires)
        self._expiry.append((expires, response_id))
        size = ENTRY_OVERHEAD + len(response_id) + len(owner) + len(provider) + len(items)
        self._retained.keep(KIND, response_id, size)
        if self._redis is not None:
            value = owner.encode() + b"\0" + provider.encode() + b"\0" + items
            task = asyncio.create_task(self._write(response_id, value))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def find(self, response_id: str, owner: str) -> Stored | None:
        """What is stored of `response_id` if `owner` made it and it has not expired."""
        found = self._entries.get(response_id)
        if found is not None and found[2] > self._clock():
            return found[1] if found[0] == owner else None
        if self._redis is None:
            return None
        value = await self._read(response_id)
        if value is None:
            return None
        made_by, _, rest = value.partition(b"\0")
        provider, _, items = rest.partition(b"\0")
        return Stored(provider.decode(), items) if made_by == owner.encode() else None

    async def settled(self) -> None:
        """Wait for the Redis writes under way (tests; and shutdown, before Redis closes)."""
        while self._writes:
            await asyncio.gather(*self._writes)

    def _forget(self, response_id: str) -> None:
        """The budget evicted `response_id`. It evicts the oldest first, so the id's expiry
        entry is at the queue's head, behind stale ones only: they go with it (else the queue
        would keep rate x retention of ids the budget already let go)."""
        self._entries.pop(response_id, None)
        expiry, entries = self._expiry, self._entries
        while expiry:
            expires, head = expiry[0]
            live = entries.get(head)
            if live is not None and live[2] == expires:
                break
            expiry.popleft()

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            expires, response_id = expiry.popleft()
            entry = self._entries.get(response_id)
            if entry is not None and entry[2] == expires:  # not remembered again since
                del self._entries[response_id]
                self._retained.drop(KIND, response_id)

    async def _write(self, response_id: str, value: bytes) -> None:
        assert self._redis is not None
        ttl_ms = max(1, int(self._retention_s * 1000))
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.set(_redis_key(response_id), value, px=ttl_ms)
        except Exception as exc:
            log.warning("could not record a response id in Redis: %s", type(exc).__name__)

    async def _read(self, response_id: str) -> bytes | None:
        assert self._redis is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                value = await self._redis.get(_redis_key(response_id))
        except Exception as exc:
            log.warning("could not look a response id up in Redis: %s", type(exc).__name__)
            return None
        return value if isinstance(value, bytes) else None
