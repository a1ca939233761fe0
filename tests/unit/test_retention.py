"""SPEC §6: what is kept after streams end shares one byte budget, the oldest forgotten first,
and a reconnection to a forgotten stream gets 204 exactly as an expired one does. The bytes
live in one ring (`gateway.retention.Ring`), so that the budget bounds what the process
holds, not only what it counts."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gateway.lifecycle import Drain
from gateway.metrics import Metrics
from gateway.resume.events import End, Event, Failure
from gateway.resume.generation import Finished, Generations, finished_record
from gateway.resume.memory import MemoryLog
from gateway.retention import ENTRY_OVERHEAD, ENTRY_SHARE, Entry, Retained, Ring
from gateway.settings import ResumeConfig
from tests.conftest import FAST_FAKE, app_client, settings_from
from tests.unit.test_resume_parts import Settled, _relay


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for each in family.samples:
            if each.name == name and each.labels == labels:
                return float(each.value)
    raise AssertionError(f"no sample {name} {labels}")


# ---- the ring ---------------------------------------------------------------------------------


def put(ring: Ring, key: str, data: bytes) -> list[str]:
    """Write `data` as the caller of a ring does; the keys it overwrote, oldest first."""
    start = ring.place(len(data))
    assert start is not None
    gone = []
    while ring.entries and ring.overwrites(ring.entries[0], start, len(data)):
        gone.append(ring.entries.popleft()[3])
    ring.write(start, [data[:1], data[1:]], (start, start + len(data), "k", key, 0.0))
    return gone


def entry(ring: Ring, key: str) -> Entry:
    return next(each for each in ring.entries if each[3] == key)


def test_a_ring_wraps_around_overwriting_the_oldest_entries_first() -> None:
    ring = Ring(10)
    assert put(ring, "a", b"aaa") == [] and put(ring, "b", b"bbb") == []
    assert put(ring, "c", b"ccc") == []  # 9 of 10 bytes used
    assert put(ring, "d", b"dd") == ["a"]  # does not fit before the end: at 0, over "a"
    assert entry(ring, "d")[:2] == (0, 2)
    assert ring.read(entry(ring, "b")) == b"bbb" and ring.read(entry(ring, "c")) == b"ccc"
    assert put(ring, "e", b"e") == []  # fits in what "a" left
    assert put(ring, "f", b"ffff") == ["b", "c"]  # reaches into "b"; "c", at the end, skipped
    assert [each[3] for each in ring.entries] == ["d", "e", "f"]
    assert [ring.read(each) for each in ring.entries] == [b"dd", b"e", b"ffff"]


def test_across_the_wrap_the_end_s_entries_go_before_the_start_s() -> None:
    ring = Ring(12)
    for key in "abcd":
        put(ring, key, key.encode() * 3)  # the ring full: a 0..3, b, c, d 9..12
    assert put(ring, "e", b"e" * 7) == ["a", "b", "c"]  # at 0, up to 7
    # 6 bytes do not fit after "e": they go at 0, over "e", and skip 7..12, where "d" is.
    # "d" does not lie where they go, but it is older than "e": it goes first.
    assert put(ring, "f", b"f" * 6) == ["d", "e"]
    assert [each[3] for each in ring.entries] == ["f"]
    assert ring.read(entry(ring, "f")) == b"ffffff"


def test_an_entry_larger_than_the_ring_has_no_place_and_a_full_ring_one() -> None:
    ring = Ring(8)
    assert ring.place(9) is None
    assert ring.place(8) == 0
    assert put(ring, "a", b"a" * 8) == []
    assert put(ring, "b", b"b" * 8) == ["a"]  # the whole ring, in turn
    assert Ring(0).place(1) is None and Ring(0).place(0) == 0


def test_a_ring_whose_entries_are_limited_otherwise_goes_back_to_0_early() -> None:
    # Entries forgotten for another reason than room (their count, their retention) free the
    # start of the ring: the next entry goes there, and the pages written stay those of what
    # the ring holds, not the whole ring's.
    ring = Ring(1000)
    reach = 0
    for n in range(50):
        if len(ring.entries) == 2:
            ring.entries.popleft()  # the cap of two entries
        assert put(ring, str(n), b"x" * 10) == []
        reach = max(reach, ring.head)
    assert reach == 20  # never more than the two entries held
    ring.entries.popleft()
    (last,) = ring.entries
    assert last[:2] == (10, 20)
    assert put(ring, "w", b"w" * 25) == []  # does not fit before it: after it, at the head
    assert ring.read(last) == b"x" * 10 and entry(ring, "w")[:2] == (20, 45)


def test_a_record_reads_back_whole_after_others_were_written_around_it() -> None:
    ring = Ring(64)
    put(ring, "a", b"A" * 30)
    put(ring, "kept", bytes(range(20)))
    put(ring, "b", b"B" * 10)  # up to 60
    put(ring, "c", b"C" * 30)  # wraps: over "a" only
    assert ring.read(entry(ring, "kept")) == bytes(range(20))


# ---- the budget -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def budget_for(ring: int, entries: int) -> int:
    """A budget whose ring and cap of entries are these (as `Retained` splits it)."""
    budget = entries * ENTRY_OVERHEAD * ENTRY_SHARE
    assert budget - entries * ENTRY_OVERHEAD >= ring
    return budget


def test_the_budget_is_the_ring_plus_the_entries_overhead() -> None:
    for max_bytes in (0, 1, 10_000, 8 * 2**20, 256 * 2**20):
        retained = Retained(max_bytes, Metrics())
        assert retained.ring.size + retained.max_entries * ENTRY_OVERHEAD <= max_bytes
    assert Retained(8 * 2**20, Metrics()).max_entries == 8 * 2**20 // ENTRY_SHARE // ENTRY_OVERHEAD
    nothing = Retained(ENTRY_OVERHEAD * ENTRY_SHARE - 1, Metrics())  # room for no entry
    nothing.register("stream", 60)
    assert nothing.ring.size == 0 and not nothing.keep("stream", "a", [b"x"])
    with pytest.raises(ValueError):
        nothing.keep("stream", "a", [b""])  # it would have no place to be overwritten from


def test_the_oldest_entries_go_first_whatever_their_kind() -> None:
    metrics = Metrics()
    retained = Retained(budget_for(100, 1000), metrics)
    retained.ring = Ring(100)  # a small ring and room for many entries: bytes decide
    retained.register("stream", 60)
    retained.register("response", 60)
    assert retained.keep("stream", "a", [b"a" * 40])
    assert retained.keep("response", "b", [b"b" * 40])
    assert retained.keep("stream", "c", [b"c" * 20])
    held = 100 + 3 * ENTRY_OVERHEAD
    assert retained.bytes == held and len(retained) == 3  # the ring full: nothing goes yet
    retained.drop("stream", "a")  # let go by its owner: not an eviction
    assert retained.get("stream", "a") is None
    assert retained.keep("stream", "d", [b"d" * 50])  # at 0: over "a" (dropped) and "b"
    assert retained.get("response", "b") is None  # the oldest still held, of another kind
    assert retained.get("stream", "c") == b"c" * 20
    assert retained.keep("stream", "e", [b"e" * 31])  # after "d": over "c"
    assert retained.get("stream", "c") is None
    assert [retained.get("stream", key) for key in "de"] == [b"d" * 50, b"e" * 31]
    assert retained.bytes == 81 + 2 * ENTRY_OVERHEAD and len(retained) == 2
    assert not retained.keep("stream", "huge", [b"h" * 101])  # larger than the ring: not kept
    assert retained.get("stream", "huge") is None and len(retained) == 2  # the rest stays
    assert sample(metrics, "gateway_retained_evictions_total", kind="stream") == 2
    assert sample(metrics, "gateway_retained_evictions_total", kind="response") == 1
    assert sample(metrics, "gateway_retained_bytes") == retained.bytes


def test_the_count_of_entries_is_capped_by_the_budget_s_other_share() -> None:
    metrics = Metrics()
    retained = Retained(budget_for(100, 2), metrics)
    retained.register("stream", 60)
    for key in "abc":
        assert retained.keep("stream", key, [key.encode()])
    assert [retained.get("stream", key) for key in "abc"] == [None, b"b", b"c"]
    assert len(retained.ring.entries) == 2  # what the overhead counts: the ring's queue too
    assert sample(metrics, "gateway_retained_evictions_total", kind="stream") == 1


def test_entries_read_as_forgotten_after_their_retention_and_a_new_key_replaces() -> None:
    clock = Clock()
    retained = Retained(budget_for(100, 10), Metrics(), clock)
    retained.register("stream", 60)
    retained.keep("stream", "a", [b"old"])
    retained.keep("stream", "a", [b"new"])  # the same key again: the newer only
    assert retained.get("stream", "a") == b"new" and len(retained) == 1
    clock.now = 30
    retained.keep("stream", "b", [b"b"])
    clock.now = 60  # "a"'s retention is over, not "b"'s
    assert retained.get("stream", "a") is None and not retained.holds("stream", "a")
    assert retained.holds("stream", "b")
    retained.keep("stream", "c", [b"c"])  # expired entries leave the ring's queue as it goes
    assert [each[3] for each in retained.ring.entries] == ["b", "c"]
    assert retained.bytes == 2 * (1 + ENTRY_OVERHEAD)


class Model:
    """What `Retained` promises, without a ring: entries readable byte for byte, forgotten
    strictly oldest first, within the ring's bytes and the cap of entries."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}  # in the order kept, the oldest first


@settings(max_examples=300, deadline=None)
@given(
    ring=st.integers(1, 48),
    cap=st.integers(1, 8),
    ops=st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 24)),  # 0: drop
        max_size=60,
    ),
)
def test_retained_against_a_model(ring: int, cap: int, ops: list[tuple[str, int]]) -> None:
    metrics = Metrics()
    retained = Retained(budget_for(ring, cap), metrics)
    retained.ring = Ring(ring)
    retained.max_entries = cap
    retained.register("stream", 60)
    model = Model()
    dropped, capped, biggest, sizes = False, False, 0, {}
    for n, (key, size) in enumerate(ops):
        if size == 0:
            retained.drop("stream", key)
            model.kept.pop(key, None)
            dropped = True
            continue
        data = bytes([n]) * size
        if model.kept.pop(key, None) is not None:
            dropped = True  # kept again: the older one is dropped first
        capped = capped or len(model.kept) >= cap
        before = list(model.kept)
        kept = retained.keep("stream", key, [data[: size // 2], data[size // 2 :]])
        assert kept == (size <= ring)
        if kept:
            model.kept[key] = data
        # Forgotten: exactly the oldest ones, none after one that stays.
        held = [each for each in before if retained.holds("stream", each)]
        assert held == before[len(before) - len(held) :]
        for gone in before[: len(before) - len(held)]:
            del model.kept[gone]
        for each, value in model.kept.items():
            assert retained.get("stream", each) == value
        assert len(retained) == len(model.kept) <= cap
        live = sum(map(len, model.kept.values()))
        assert live <= ring and retained.bytes == live + len(model.kept) * ENTRY_OVERHEAD
        biggest = max(biggest, size)
        if kept and len(held) < len(before) and not dropped and not capped:
            # Nor too early: what went was in the way, the end's remainders skipped aside
            # (at most two: before the head and at the last wrap) each less than an entry.
            # (Dropped entries hold their place until overwritten, and entries forgotten for
            # the cap let the ring go back to 0 early: then the bytes bound it less tightly.)
            last_gone = sizes[before[len(before) - len(held) - 1]]
            assert live + last_gone + 2 * biggest > ring
        sizes[key] = size
    assert sample(metrics, "gateway_retained_bytes") == retained.bytes


# ---- ended streams ----------------------------------------------------------------------------


async def _run(generations: Generations, stream_id: str, texts: list[str]) -> None:
    generation = await generations.start(stream_id, "me", _relay(texts), Settled())
    assert generation is not None
    async with asyncio.timeout(5):
        await generation.task


async def test_ended_streams_are_evicted_oldest_first_and_then_answer_nothing() -> None:
    texts = ["alpha ", "beta ", "gamma"]
    probe = Generations(ResumeConfig(), None, Drain(), Metrics())
    generation = await probe.start("P", "me", _relay(texts), Settled())
    assert generation is not None
    async with asyncio.timeout(5):
        await generation.task
    size = sum(map(len, finished_record(generation)))  # one record, as the ring keeps it
    await probe.close()
    assert size > sum(len(text) for text in texts)  # the events and who may read them
    metrics = Metrics()
    retained = Retained(budget_for(2 * size + 1, 10), metrics)
    retained.ring = Ring(2 * size + 1)  # room for two
    generations = Generations(ResumeConfig(), None, Drain(), metrics, retained)
    for stream_id in ("S1", "S2", "S3"):
        await _run(generations, stream_id, texts)
    assert not generations.ended_here("S1")  # the oldest was forgotten
    assert generations.ended_here("S2") and generations.ended_here("S3")
    assert await generations.attach("S1", "me", -1) is None  # 204, as for an expired one
    reader = await generations.attach("S2", "me", 0)
    assert reader is not None
    assert [event async for event in reader][:2] == [(1, "beta "), (2, "gamma")]
    assert sample(metrics, "gateway_retained_bytes") == 2 * (size + ENTRY_OVERHEAD)
    assert sample(metrics, "gateway_retained_evictions_total", kind="stream") == 1
    await generations.close()


async def test_a_reconnection_to_an_evicted_stream_gets_204() -> None:
    # A budget of 1 byte has room for no entry at all.
    settings = settings_from(FAST_FAKE + "[resume]\nresume_retained_max_bytes = 1\n")
    async with app_client(settings) as (client, app):
        first = await client.post("/stream?format=sse", json={"prompt": "x", "resumable": True})
        stream_id = first.headers["x-stream-id"]
        await ended(app, stream_id)
        again = await client.get(f"/stream/{stream_id}", params={"after": "0"})
        by_header = await client.get("/stream", headers={"Last-Event-ID": f"{stream_id}:0"})
    assert first.status_code == 200 and "event: done" in first.text
    assert again.status_code == 204 and by_header.status_code == 204
    kept = settings_from(FAST_FAKE)
    async with app_client(kept) as (client, app):
        first = await client.post("/stream?format=sse", json={"prompt": "x", "resumable": True})
        stream_id = first.headers["x-stream-id"]
        await ended(app, stream_id)
        again = await client.get(f"/stream/{stream_id}", params={"after": "0"})
    assert again.status_code == 200 and "event: done" in again.text  # within the budget


async def ended(app: FastAPI, stream_id: str) -> None:
    """The generation's task is done, and so its registry has moved it to the ended ones."""
    generation = app.state.gateway.generations.local.get(stream_id)
    if generation is not None:
        # A callback added now runs after the registry's own (added when it started), even
        # when the task is already done.
        after_registry = asyncio.get_running_loop().create_future()
        generation.task.add_done_callback(lambda _: after_registry.set_result(None))
        async with asyncio.timeout(5):
            await after_registry


class _Ended:
    """What `finished_record` reads of a generation."""

    def __init__(self, log: MemoryLog, owner: str) -> None:
        self.log, self.owner, self.model, self.provider = log, owner, "modèle/☃", "prov"


@given(
    texts=st.lists(st.text(max_size=12), max_size=8),
    owner=st.text(max_size=20),
    failed=st.booleans(),
    after=st.integers(-1, 9),
)
def test_a_finished_record_reads_back_every_event_after_any_position(
    texts: list[str], owner: str, failed: bool, after: int
) -> None:
    log = MemoryLog(2**20)
    terminal = Failure("upstream_error", "ö") if failed else End("stop", {"t": 1}, "m", "p")
    for text in [*texts, terminal]:
        log.append(text, len(text) if isinstance(text, str) else 0)
    record = Finished(b"".join(finished_record(_Ended(log, owner))))  # type: ignore[arg-type]
    assert (record.owner, record.model, record.provider) == (owner, "modèle/☃", "prov")
    assert not record.truncated and record.last_seq() == len(texts)
    events = [(seq, text) for seq, text in enumerate(texts)] + [(len(texts), terminal)]
    after = min(after, len(texts) - 1)  # `attach` answers 204 from the terminal event on

    async def read() -> list[Event]:
        return [event async for event in record.reader(after)]

    assert asyncio.run(read()) == events[after + 1 :]


def test_a_truncated_log_leaves_a_record_that_only_says_so() -> None:
    log = MemoryLog(4)
    for text in ["abc", "def", "ghi"]:
        log.append(text, 3)
    assert log.truncated
    record = Finished(b"".join(finished_record(_Ended(log, "me"))))  # type: ignore[arg-type]
    assert record.truncated and record.owner == "me" and record.text == b""
