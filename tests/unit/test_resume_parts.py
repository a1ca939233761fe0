"""The parts of resumable streams on their own: the memory ring, event encoding, tokens."""

from __future__ import annotations

import asyncio

import pytest

from gateway.auth import GatewayKey
from gateway.parts import (
    ReasoningDelta,
    ReasoningEnd,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from gateway.resume.events import End, Failure, decode, encode, is_terminal
from gateway.resume.memory import FELL_BEHIND, MemoryLog
from gateway.resume.tokens import RECONNECT_GRACE_S, TOKEN_TTL_S, TokenSigner


def key(name: str, digest: bytes = b"d" * 32) -> GatewayKey:
    return GatewayKey(name, digest, None, None, None, None)


async def collect(log: MemoryLog, after: int) -> list[tuple[int, object]]:
    async with asyncio.timeout(5):
        return [event async for batch in log.follow(after) for event in batch]


async def test_readers_replay_then_follow_live_exactly_once() -> None:
    log = MemoryLog(1000)
    log.append("a", 1)
    log.append("b", 1)
    reader = asyncio.ensure_future(collect(log, 0))
    await asyncio.sleep(0)  # the reader is now waiting for the next append
    log.append("c", 1)
    end = End("stop", None, "m", "p")
    log.append(end, 10)
    assert await reader == [(1, "b"), (2, "c"), (3, end)]
    batches = [batch async for batch in log.follow(0)]
    assert batches == [[(1, "b"), (2, "c"), (3, end)]]  # what is in hand comes together
    assert await collect(log, -1) == [(0, "a"), (1, "b"), (2, "c"), (3, end)]
    assert log.last_seq() == 3 and log.ended and not log.truncated


async def test_the_ring_drops_the_oldest_and_stops_being_resumable() -> None:
    log = MemoryLog(10)
    for text in ("aaaa", "bbbb", "cccc"):
        log.append(text, 4)
    assert log.truncated and log.base == 1 and log.size == 8
    assert (await anext(log.follow(-1))) == [(0, FELL_BEHIND)]  # fell out of the ring
    failure = Failure("upstream_unavailable", "x")
    log.append(failure, 100)  # the last event is always kept, whatever its size
    assert await collect(log, 2) == [(3, failure)]


async def test_a_long_ring_compacts_and_keeps_its_numbering() -> None:
    log = MemoryLog(100)
    for index in range(5000):
        log.append(str(index % 10), 1)
    assert log.base == 4900 and log.next_seq == 5000
    log.append(End(None, None, "m", "p"), 1)
    events = await collect(log, 4990)
    assert [seq for seq, _ in events] == list(range(4991, 5001))


@pytest.mark.parametrize(
    "payload",
    [
        "plain",
        "é\u2028\x00",
        End("stop", {"total_tokens": 3}, "m", "p"),
        Failure("t", "m"),
        ToolCallStart(0, "call_1", "write"),
        ToolCallDelta(1, '{"a":'),
        ToolCallEnd(2),
        ReasoningDelta("hm"),
        ReasoningEnd("sig", "anthropic", redacted=True),
    ],
)
def test_events_round_trip_through_a_stream_entry(payload: object) -> None:
    field, value = encode(payload)  # type: ignore[arg-type]
    assert decode({field: value}) == payload


def test_only_ends_and_failures_are_terminal() -> None:
    # The trap of a text-only log: "not a str" meant "the end", so a first tool call ended it.
    assert not is_terminal(ToolCallStart(0, "c", "t")) and not is_terminal("x")
    assert is_terminal(End(None, None, "m", "p")) and is_terminal(Failure("t", "m"))


async def test_an_ended_generation_keeps_its_parts_and_texts_that_start_with_nul() -> None:
    from gateway.lifecycle import Drain
    from gateway.metrics import Metrics
    from gateway.resume.generation import Generations
    from gateway.settings import ResumeConfig

    deltas: list[object] = [
        ReasoningDelta("think"),
        ReasoningEnd("sig", "anthropic"),
        "\x00p{}",  # text that looks like the record's part marker
        "\x00",
        ToolCallStart(0, "call_1", "write"),
        ToolCallDelta(0, '{"path":"a"}'),
        ToolCallEnd(0),
    ]
    generations = Generations(ResumeConfig(), None, Drain(), Metrics())
    generation = await generations.start("S", "me", _relay(deltas), Settled())  # type: ignore[arg-type]
    assert generation is not None
    async with asyncio.timeout(5):
        await generation.task
    assert "S" in generations.finished
    reader = await generations.attach("S", "me", -1)
    assert reader is not None
    events = [event async for event in reader]
    assert [payload for _, payload in events[:-1]] == deltas
    assert isinstance(events[-1][1], End)
    await generations.close()


def test_tokens_are_bound_to_the_key_and_expire() -> None:
    signer = TokenSigner("a-shared-secret-0123456789")
    alice, bob = key("alice"), key("bob", b"e" * 32)
    token = signer.issue(alice, now=1000)
    assert "alice" not in token and signer.verify(token, [alice, bob], False, now=1000) is alice
    assert signer.verify(token, [bob], False, now=1000) is None  # the key is gone
    rotated = key("alice", b"f" * 32)
    assert signer.verify(token, [rotated], False, now=1000) is None  # rotated: old tokens die
    late = 1000 + TOKEN_TTL_S + 1
    assert signer.verify(token, [alice], False, now=late) is None  # too late to start
    assert signer.verify(token, [alice], True, now=late) is alice  # still fine to reconnect
    assert signer.verify(token, [alice], True, now=late + RECONNECT_GRACE_S) is None
    other_replica = TokenSigner("a-shared-secret-0123456789")
    assert other_replica.verify(token, [alice], False, now=1000) is alice
    assert TokenSigner(None).verify(token, [alice], False, now=1000) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "x",
        lambda t: t.replace(".", ".9", 1),
        lambda t: "Ym9i." + t.split(".", 1)[1],  # "bob" with alice's MAC
        lambda t: "%%%." + t.split(".", 1)[1],
        lambda t: t.split(".", 1)[0] + ".99999999999999." + t.rsplit(".", 1)[1],
        lambda t: t + "." + t,
        lambda t: "é" * 600,
        lambda t: "",
    ],
)
def test_mangled_tokens_are_refused(mangle: object) -> None:
    signer = TokenSigner("a-shared-secret-0123456789")
    alice = key("alice")
    token = signer.issue(alice, now=1000)
    assert signer.verify(mangle(token), [alice], True, now=1000) is None  # type: ignore[operator]


class Settled:
    """An accounting that records how the generation ended."""

    next_charge = 10**9

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    async def running(self, deltas: int) -> None:
        return None

    async def ended(self, relay: object, deltas: int, outcome: str, error: object) -> None:
        self.outcomes.append(outcome)


async def test_a_generation_stopped_before_its_task_started_still_ends_and_settles() -> None:
    # Regression: a chat's new message cancels its running answer; when that came before
    # the answer's task had taken its first step, the task never ran its body, so its log
    # never ended (its reader hung) and its stream slot was never given back.
    from gateway.models import Attempt
    from gateway.providers import RegisteredProvider
    from gateway.providers.base import ProviderSettings, StreamOutcome
    from gateway.relay import Relay
    from gateway.resume.generation import Generation, Stop
    from gateway.settings import ResumeConfig

    closed = asyncio.Event()

    async def rest():  # type: ignore[no-untyped-def]
        try:
            yield ["never read"]
        finally:
            closed.set()

    provider = RegisteredProvider("p", ProviderSettings(), None)  # type: ignore[arg-type]
    relay = Relay(Attempt("m", provider, "u"), ["first"], rest(), StreamOutcome())
    accounting = Settled()
    generation = Generation("S", "", relay, ResumeConfig(), None, accounting, lambda: None)
    generation.stop(Stop.CANCELLED)  # before the event loop ran the task at all
    async with asyncio.timeout(5):
        await generation.task
        events = await collect(generation.log, -1)
    assert generation.ended
    assert [payload for _, payload in events] == [Stop.CANCELLED.value]
    assert accounting.outcomes == ["cancelled"]


async def test_one_reads_deltas_extend_the_log_as_one_batch_with_an_id_each() -> None:
    log = MemoryLog(9)
    follower = log.follow(-1)
    waiting = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0)  # the follower is now waiting for the log to change
    log.extend(["ab", "cd", "ef"], [2, 2, 2])
    assert await waiting == [(0, "ab"), (1, "cd"), (2, "ef")]  # one wake; an id each
    await follower.aclose()
    log.extend(["gh", "ij"], [2, 2])  # over the 9-byte cap: the oldest is dropped
    assert (log.base, log.next_seq, log.size, log.ended) == (1, 5, 8, False)


def _relay(texts: list[str]):  # type: ignore[no-untyped-def]
    from gateway.models import Attempt
    from gateway.providers import RegisteredProvider
    from gateway.providers.base import ProviderSettings, StreamOutcome
    from gateway.relay import Relay

    async def rest():  # type: ignore[no-untyped-def]
        for text in texts[1:]:
            yield [text]

    outcome = StreamOutcome()
    outcome.finish_reason = "stop"
    provider = RegisteredProvider("p", ProviderSettings(), None)  # type: ignore[arg-type]
    return Relay(Attempt("m", provider, "u"), texts[:1], rest(), outcome)


async def test_an_ended_generation_is_kept_as_plain_data_and_forgotten_after_retention() -> None:
    import gc

    from gateway.errors import NotFound
    from gateway.lifecycle import Drain
    from gateway.metrics import Metrics
    from gateway.resume.generation import Generations
    from gateway.settings import ResumeConfig

    generations = Generations(ResumeConfig(), None, Drain(), Metrics())
    generation = await generations.start("S", "me", _relay(["a", "b", "c"]), Settled())
    assert generation is not None
    async with asyncio.timeout(5):
        await generation.task  # the registry's done-callback ran before this await returned
    assert "S" not in generations.local and "S" in generations.finished
    record = generations.finished["S"]
    gc.collect()
    gc.collect()  # a tuple is untracked once what it holds is
    assert not gc.is_tracked(record)  # nothing a full collection has to walk

    async def events_after(after: int) -> list[tuple[int, object]]:
        reader = await generations.attach("S", "me", after)
        assert reader is not None
        return [event async for event in reader]

    everything = await events_after(-1)
    assert everything[:3] == [(0, "a"), (1, "b"), (2, "c")]
    assert isinstance(everything[3][1], End) and everything[3][0] == 3
    assert everything[3][1].finish_reason == "stop" and everything[3][1].model == "m"
    assert await events_after(1) == everything[2:]
    assert await generations.attach("S", "me", 3) is None  # ended where the reader stopped
    with pytest.raises(NotFound):
        await generations.attach("S", "someone else", -1)
    with pytest.raises(NotFound):
        await generations.cancel("S", "me")  # ended: nothing to cancel
    generations._expiring[0] = (0.0, "S")  # its retention is over: the sweep forgets it
    generations._sweep()
    assert "S" not in generations.finished
    assert await generations.attach("S", "me", -1) is None
    await generations.close()


def test_a_store_outage_is_logged_once_a_minute_not_once_per_stream() -> None:
    from gateway.resume.generation import _Throttle

    throttle = _Throttle(60)
    assert throttle.due()  # the first failure is logged
    assert not any(throttle.due() for _ in range(100))  # the streams failing with it are not
    throttle.last -= 61
    assert throttle.due()  # a minute later, once more
