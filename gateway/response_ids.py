"""Stored Responses API responses: which key made each, on which provider, and for the
translated path their conversation (SPEC §4.10).

On the native path the upstream holds a response's state; the gateway only has to know who
may continue it (`previous_response_id`) or read it (`GET /v1/responses/{id}`), and which
provider to ask. On the translated path the gateway is the state: the response's input and
output items, as JSON, so that `previous_response_id` rebuilds the whole conversation. Each
response is remembered here with its owner (the gateway key's name, "" when the gateway is
open) for `responses_retention_s`. An id that is unknown, expired or another key's is not
found, and the route answers as OpenAI does.

In this process each entry lives in the shared retention budget (`gateway.retention`, kind
`"response"`): its bytes (owner, provider and items, as Redis holds them too) in the budget's
ring, readable for `responses_retention_s` or until the budget needs their room, the oldest
first. With Redis, each id is also written there (`SET ... PX`), so that any replica finds it:
the write is started when the id is seen and not waited for (a client learns the id from the
same stream, and answers later), and a lookup that misses here asks Redis. A Redis failure is
logged; the lookup then answers from this process's entries alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from gateway.retention import Retained

__all__ = ["KIND", "ResponseIds", "Stored"]

log = logging.getLogger("gateway.responses")

KIND = "response"


@dataclass(frozen=True, slots=True)
class Stored:
    provider: str  # the provider that made it (GET asks it)
    items: bytes  # the conversation's items as a JSON list (translated); b"" when native


def _value(owner: str, provider: str, items: bytes) -> bytes:
    """An entry as the ring and Redis hold it: owner NUL provider NUL items."""
    return owner.encode() + b"\0" + provider.encode() + b"\0" + items


def _stored(value: bytes, owner: str) -> Stored | None:
    made_by, _, rest = value.partition(b"\0")
    provider, _, items = rest.partition(b"\0")
    return Stored(provider.decode(), items) if made_by == owner.encode() else None


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
    ) -> None:
        self._retained = retained
        self._retention_s = retention_s
        self._redis = redis
        self._timeout_s = timeout_s
        self._writes: set[asyncio.Task[None]] = set()
        retained.register(KIND, retention_s)

    def remember(self, response_id: str, owner: str, provider: str, items: bytes = b"") -> None:
        """`owner` made `response_id` on `provider` (called from the stream: no waiting)."""
        value = _value(owner, provider, items)
        self._retained.keep(KIND, response_id, [value])
        if self._redis is not None:
            task = asyncio.create_task(self._write(response_id, value))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def holds(self, response_id: str) -> bool:
        """Whether this process still keeps `response_id` (whoever made it)."""
        return self._retained.holds(KIND, response_id)

    async def find(self, response_id: str, owner: str) -> Stored | None:
        """What is stored of `response_id` if `owner` made it and it has not expired."""
        value = self._retained.get(KIND, response_id)
        if value is None and self._redis is not None:
            value = await self._read(response_id)
        return None if value is None else _stored(value, owner)

    async def settled(self) -> None:
        """Wait for the Redis writes under way (tests; and shutdown, before Redis closes)."""
        while self._writes:
            await asyncio.gather(*self._writes)

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
