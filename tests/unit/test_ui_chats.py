"""ChatStreams: a chat id → its running generation, per owner; Redis failures fall back to the
generations of this process."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.resume.chats import ChatStreams


class FailingRedis:
    """A Redis client whose every call fails, as during an outage."""

    def register_script(self, script: str) -> Any:
        return self._fail

    async def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("redis is down")

    def set(self, *args: Any, **kwargs: Any) -> Any:
        return self._fail()

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._fail()


async def test_entries_are_per_owner_and_forgotten_only_for_their_generation() -> None:
    chats = ChatStreams(None, 0.25, lambda: None)
    await chats.remember("alice", "c", "s1")
    assert await chats.find("alice", "c") == "s1"
    assert await chats.find("bob", "c") is None
    await chats.remember("alice", "c", "s2")  # a newer generation replaced it
    await chats.forget("alice", "c", "s1")
    assert await chats.find("alice", "c") == "s2"
    await chats.forget("alice", "c", "s2")
    assert await chats.find("alice", "c") is None


@pytest.mark.parametrize("owner", ["", "alice"])
async def test_redis_failures_fall_back_to_this_process_and_are_counted(owner: str) -> None:
    failures: list[int] = []
    chats = ChatStreams(FailingRedis(), 0.25, lambda: failures.append(1))
    await chats.remember(owner, "c", "s1")
    assert await chats.find(owner, "c") == "s1"
    await chats.forget(owner, "c", "s1")
    assert await chats.find(owner, "c") is None
    assert len(failures) == 4
