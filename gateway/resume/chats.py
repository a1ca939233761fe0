"""Which generation is a chat's current answer: chat `id` → stream id, per owner (SPEC §4.6).

`useChat` knows its chat's `id`, not the gateway's stream id, so resume (`GET
/ui/chat/{id}/stream`) and stop (`POST /ui/chat/{id}/stop`) look the generation up here. The
owner (the gateway key's name, "" when the gateway is open) is part of the key: another key
never finds a chat's stream. An entry lives while its generation runs: it is removed when the
generation ends (only if it still names that generation), and replaced when the chat starts a
new one.

With Redis (`redis_url`), entries are Redis strings, so a chat started on one replica is found
on any other; each call is bounded by `redis_timeout_s`, and when Redis fails the lookup falls
back to this process's own entries (the generations running here).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

__all__ = ["ChatStreams"]

# An entry outlives any sane generation; it is normally removed when the generation ends.
ENTRY_TTL_S = 24 * 3600

# KEYS entry. ARGV stream id. Remove the entry only if it still names that stream.
_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _key(owner: str, chat_id: str) -> str:
    digest = hashlib.sha256(f"{owner}\0{chat_id}".encode()).hexdigest()[:40]
    return f"gw:ui:{{{digest}}}"


class ChatStreams:
    def __init__(
        self, redis: Any | None, timeout_s: float, on_store_failure: Callable[[], None]
    ) -> None:
        self.local: dict[tuple[str, str], str] = {}
        self.redis = redis
        self.timeout_s = timeout_s
        self.on_store_failure = on_store_failure
        self._forget = redis.register_script(_FORGET) if redis is not None else None

    async def remember(self, owner: str, chat_id: str, stream_id: str) -> None:
        """`stream_id` is now the chat's current generation."""
        self.local[(owner, chat_id)] = stream_id
        if self.redis is not None:
            await self._redis(self.redis.set(_key(owner, chat_id), stream_id, ex=ENTRY_TTL_S))

    async def find(self, owner: str, chat_id: str) -> str | None:
        """The chat's current generation, if it has one running."""
        if self.redis is not None:
            found = await self._redis(self.redis.get(_key(owner, chat_id)))
            if found is not _FAILED:
                return found.decode() if isinstance(found, bytes) else None
        return self.local.get((owner, chat_id))

    async def forget(self, owner: str, chat_id: str, stream_id: str) -> None:
        """The generation ended: drop the entry, unless a newer generation replaced it."""
        if self.local.get((owner, chat_id)) == stream_id:
            del self.local[(owner, chat_id)]
        if self._forget is not None:
            await self._redis(self._forget(keys=[_key(owner, chat_id)], args=[stream_id]))

    async def _redis(self, call: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call
        except Exception:
            self.on_store_failure()
            return _FAILED


_FAILED = object()
