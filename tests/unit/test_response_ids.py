"""Response ids and their owners (SPEC §4.10): found only by the key that made them, until
their retention ends or the shared byte budget lets them go (the oldest first, with the
budget's other kinds); with Redis another process finds them, and a Redis failure leaves this
process's own."""

from __future__ import annotations

import re
from typing import Any

from gateway.metrics import Metrics
from gateway.native.responses import ResponsesNative, next_sequence_number
from gateway.native.sse import RawEvents
from gateway.providers.base import StreamOutcome
from gateway.response_ids import ResponseIds
from gateway.retention import ENTRY_SHARE, Retained
from tests.conftest import ManualClock, wire
from tests.splits import every_split

CLOCK = ManualClock()


async def provider_of(found: ResponseIds, response_id: str, owner: str) -> str | None:
    stored = await found.find(response_id, owner)
    return stored.provider if stored is not None else None


def ids(max_bytes: int = 10**6, retention_s: float = 10, **options: Any) -> ResponseIds:
    return ResponseIds(Retained(max_bytes, Metrics(), clock=CLOCK), retention_s, **options)


async def test_an_id_is_found_by_its_owner_only_until_it_expires() -> None:
    found = ids()
    found.remember("resp_1", "team-a", "up")
    assert await provider_of(found, "resp_1", "team-a") == "up"
    assert await provider_of(found, "resp_1", "team-b") is None
    assert await provider_of(found, "resp_2", "team-a") is None
    CLOCK.advance(10)
    assert await provider_of(found, "resp_1", "team-a") is None
    assert not found.holds("resp_1")


async def test_remembered_again_an_id_lives_on_from_then() -> None:
    found = ids()
    found.remember("resp_1", "a", "up")
    CLOCK.advance(6)
    found.remember("resp_1", "a", "up")
    CLOCK.advance(6)
    found.remember("resp_2", "a", "up")  # the first expiry is stale: resp_1 stays
    assert await provider_of(found, "resp_1", "a") == "up"


async def test_the_budget_forgets_the_oldest_response_and_its_ring_bytes_with_it() -> None:
    from gateway.resume.generation import RETAINED_KIND

    # A budget whose entry cap is three entries: the fourth evicts the oldest, of any kind.
    retained = Retained(3 * ENTRY_SHARE * 448 + 7, Metrics(), clock=CLOCK)
    assert retained.max_entries == 3
    retained.register(RETAINED_KIND, 300)
    found = ResponseIds(retained, 3600)
    retained.keep(RETAINED_KIND, "stream-0", [b"an ended stream"])
    for n in range(3):
        found.remember(f"resp_{n}", "a", "up", b'[{"role":"user"}]')
    assert not retained.holds(RETAINED_KIND, "stream-0")  # the oldest entry, another kind
    assert [await provider_of(found, f"resp_{n}", "a") for n in range(3)] == ["up"] * 3
    found.remember("resp_3", "a", "up")
    assert await provider_of(found, "resp_0", "a") is None and found.holds("resp_3")
    assert (await found.find("resp_1", "a")) is not None
    stored = await found.find("resp_2", "a")
    assert stored is not None and stored.items == b'[{"role":"user"}]'


class BrokenRedis:
    async def set(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("down")

    async def get(self, *args: Any) -> None:
        raise ConnectionError("down")


async def test_a_redis_failure_leaves_this_processs_entries() -> None:
    found = ids(redis=BrokenRedis())
    found.remember("resp_1", "a", "up")
    await found.settled()
    assert await provider_of(found, "resp_1", "a") == "up"
    assert await provider_of(found, "resp_2", "a") is None


def test_sequence_numbers_follow_the_last_event() -> None:
    assert next_sequence_number("") == 0
    assert (
        next_sequence_number('data: {"delta":"\\"sequence_number\\":9","sequence_number":4}') == 5
    )


def test_events_without_an_event_line_are_read_by_their_type() -> None:
    """Some servers put the type in the data only: the terminal event is still found."""
    stream = re.sub(rb"event: [^\n]*\n", b"", wire("openai/responses.sse"))
    stream = b": a comment\n\n" + stream
    remembered: list[tuple[str, str]] = []
    for cut in every_split(stream):
        native = ResponsesNative({}, True, lambda *made: remembered.append(made))
        events, outcome, batch, ended = RawEvents(1 << 20), StreamOutcome(), [], False
        for piece in cut:
            for event in events.feed(piece):
                ended = native.on_event(event, outcome, batch)
        assert ended and "".join(batch).encode("latin-1") == stream
        assert outcome.usage is not None and outcome.usage.completion_tokens == 18
        assert outcome.finish_reason == "stop"
    assert remembered[0][0].startswith("resp_0f9c")
