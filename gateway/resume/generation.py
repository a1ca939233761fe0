"""Generations detached from requests, and the registry that starts, finds and cancels them.

A `Generation` is a producer task owned by the app: it reads a primed relay, numbers its
events and appends each one to the log (Redis first when there is a mirror, then memory)
before any reader can send it. It holds the request's rate-limit lease and token accounting
(through `Accounting`), is registered with the shutdown drain, and is stopped only explicitly:
`cancel` (the stop route), the orphan timeout (no reader for `orphan_timeout_s`, counting
readers on other replicas through Redis), or shutdown. Stopping it cancels its task, which
closes the upstream at once, and appends the terminal `Failure` every reader then sends.

`Generations` is the small API the routes use, independent of any wire framing:

    start(stream_id, owner, relay, accounting) -> Generation | None   (None: not resumable)
    attach(stream_id, owner, after)            -> Reader | None       (None: nothing to send)
    cancel(stream_id, owner)                   -> None
    close()                                     at shutdown

`attach` and `cancel` raise `NotFound` for another owner's stream (and `cancel` for an ended
or unknown one). A `Reader` is an async iterator of `(seq, payload)` events after `after`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import struct
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import accumulate
from typing import TYPE_CHECKING, Protocol

from gateway.errors import GatewayError, NotFound, Unavailable
from gateway.lifecycle import Drain, Interrupt
from gateway.metrics import Metrics
from gateway.observability import outcome_of
from gateway.providers.base import Batch
from gateway.relay import Relay
from gateway.resume.events import (
    FAILURE,
    PART,
    End,
    Event,
    Failure,
    Payload,
    decode,
    encode,
    is_terminal,
)
from gateway.resume.memory import MemoryLog
from gateway.resume.redis import Mirror, RedisLog, tick_for
from gateway.retention import Retained
from gateway.settings import ResumeConfig

if TYPE_CHECKING:
    from gateway.tracing import RequestTrace

__all__ = ["Accounting", "Finished", "Generation", "Generations", "Reader", "Stop"]

log = logging.getLogger("gateway.resume")


class _Throttle:
    """At most one log line per `every_s` (SPEC §7: an outage is logged once a minute)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.last = -math.inf

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return False
        self.last = now
        return True


_outage_log = _Throttle()


class Stop(enum.Enum):
    CANCELLED = Failure("cancelled", "the stream was cancelled")
    ORPHANED = Failure("cancelled", "no reader came back before the orphan time-out")
    SHUTDOWN = Failure("unavailable", "the gateway is shutting down")


class Accounting(Protocol):
    """What a generation owes the limits and the metrics (the route supplies it)."""

    @property
    def next_charge(self) -> int:
        """The delta count at which `running` wants to be called next."""

    async def running(self, deltas: int) -> None: ...

    async def ended(
        self, relay: Relay, deltas: int, outcome: str, error: GatewayError | None
    ) -> None: ...


class Reader:
    """One reader of a generation: its events after a position, and where it came from.

    Iterate it for one event at a time, or `batches()` for the events in hand together (one
    write for several)."""

    def __init__(
        self,
        model: str,
        provider: str,
        batches: AsyncIterator[list[Event]],
        replayed: int,
        source: str,
        detach: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.provider = provider
        self._batches = batches
        self.replayed = replayed  # events already in the log after the reader's position
        self.source = source  # "memory" (this replica) or "redis"
        self._detach = detach
        # The starting request's trace, when tracing is on and the generation runs here: a
        # reconnection's span links to it (gateway.tracing).
        self.origin: RequestTrace | None = None

    def batches(self) -> AsyncIterator[list[Event]]:
        return self._batches

    async def __aiter__(self) -> AsyncIterator[Event]:
        async for batch in self._batches:
            for event in batch:
                yield event

    async def aclose(self) -> None:
        aclose = getattr(self._batches, "aclose", None)
        if aclose is not None:
            await aclose()
        if self._detach is not None:
            self._detach()
            self._detach = None


class Generation:
    def __init__(
        self,
        stream_id: str,
        owner: str,
        relay: Relay,
        config: ResumeConfig,
        mirror: Mirror | None,
        accounting: Accounting,
        on_store_failure: Callable[[], None],
    ) -> None:
        self.id = stream_id
        self.owner = owner
        self.relay = relay
        self.config = config
        self.mirror = mirror
        self.accounting = accounting
        self.on_store_failure = on_store_failure
        self.log = MemoryLog(config.resume_max_bytes)
        self.readers = 0
        self.stopped: Stop | None = None
        self.running = False  # the task has started: a stop interrupts it where it waits
        self.finishing = False  # the terminal event is being written: nothing can stop it now
        self.deltas = 0
        self.bytes = 0
        idle_s = relay.attempt.provider.config.idle_timeout
        self.tick_s = tick_for(idle_s, config.orphan_timeout_s)
        loop = asyncio.get_running_loop()
        self.reader_seen = loop.time()
        self.beating: asyncio.Task[None] | None = None  # a Redis heartbeat under way
        self.task = asyncio.ensure_future(self._run())
        # A loop timer, not a task: most generations end before their first tick, and a
        # task per generation was a measurable part of a short stream's cost.
        self.ticker = loop.call_later(self.tick_s, self._tick)

    @property
    def model(self) -> str:
        return self.relay.model

    @property
    def provider(self) -> str:
        return self.relay.provider

    @property
    def ended(self) -> bool:
        return self.log.ended

    @property
    def truncated(self) -> bool:
        return self.log.truncated

    def last_seq(self) -> int:
        return self.log.last_seq()

    # ---- producing ---------------------------------------------------------------------------

    async def _run(self) -> None:
        relay, error = self.relay, None
        self.running = True
        try:
            terminal, error = await self._produce()
            self.finishing = True
            await self._append(terminal)
        finally:
            self.ticker.cancel()
            if self.beating is not None:
                self.beating.cancel()
            if not self.log.ended:  # ended by something unforeseen: readers still get an end
                self.log.append(Stop.SHUTDOWN.value, 0)
            result = "complete" if error is None else outcome_of(error.type)
            if self.stopped is not None:
                result = self.stopped.name.lower()
            await self.accounting.ended(relay, self.deltas, result, error)

    async def _produce(self) -> tuple[Payload, GatewayError | None]:
        """Relay every delta into the log; the terminal event that follows, and the error."""
        relay = self.relay
        try:
            try:
                if self.stopped is not None:  # stopped before it started: read nothing
                    return self.stopped.value, None
                if relay.first:
                    await self._append_deltas(relay.first)
                async for batch in relay.rest:
                    await self._append_deltas(batch)
            finally:
                await relay.aclose()  # the upstream is closed before anything else happens
        except GatewayError as exc:
            return Failure(exc.type, exc.message), exc
        except asyncio.CancelledError:
            if self.stopped is None:
                raise
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
            return self.stopped.value, None
        outcome = relay.outcome
        usage = outcome.usage.as_dict() if outcome.usage else None
        return End(outcome.finish_reason, usage, relay.model, relay.provider), None

    async def _append_deltas(self, batch: Batch) -> None:
        """One read's deltas, one log event each (ids stay per delta). Without a Redis mirror
        they go into the log together, waking its readers once (the per-delta path was the
        resumable streams' main cost over plain ones)."""
        if self.mirror is not None:
            for text in batch:
                await self._append(text)
            return
        sizes = [len(d.encode()) if type(d) is str else len(encode(d)[1]) for d in batch]
        self.bytes += sum(sizes)
        self.log.extend(batch, sizes)
        self.deltas += len(batch)
        if self.deltas >= self.accounting.next_charge:
            await self.accounting.running(self.deltas)

    async def _append(self, payload: Payload) -> None:
        field, data = encode(payload)
        size = len(data)
        self.bytes += size
        mirror = self.mirror
        if mirror is not None:
            final = is_terminal(payload)
            if self.bytes > self.config.resume_max_bytes and not final:
                await self._mirror_off(mirror.give_up())
            elif await self._mirror_off(mirror.append(self.log.next_seq, field, data, final)):
                self.stop(Stop.CANCELLED)
        self.log.append(payload, size)
        if not is_terminal(payload):
            self.deltas += 1
            if self.deltas >= self.accounting.next_charge:
                await self.accounting.running(self.deltas)

    async def _mirror_off(self, call: Awaitable[bool] | Awaitable[None]) -> bool:
        """Run a mirror call; on failure stop mirroring (local readers go on from memory)."""
        try:
            return bool(await call)
        except Exception as exc:
            if self.mirror is not None:
                self.mirror = None
                self.on_store_failure()
                if _outage_log.due():  # every stream in flight fails at once in an outage
                    log.warning(
                        "resume store failed mid-stream (%s): its readers here carry on, "
                        "from memory (logged once a minute at most)",
                        type(exc).__name__,
                    )
            return False
        finally:
            if self.bytes > self.config.resume_max_bytes:
                self.mirror = None

    def _tick(self) -> None:
        """Every `tick_s`: the heartbeat and remote cancel (Redis), and the orphan time-out."""
        self.ticker = asyncio.get_running_loop().call_later(self.tick_s, self._tick)
        if self.mirror is None:
            self._check_orphaned()
        elif self.beating is None:  # the orphan check waits for the beat's reader count
            self.beating = asyncio.ensure_future(self._beat(self.mirror))

    async def _beat(self, mirror: Mirror) -> None:
        try:
            beat = await self._mirror_beat(mirror)
        finally:
            self.beating = None
        if beat is not None and beat[0]:
            self.stop(Stop.CANCELLED)
        if beat is not None and beat[1]:
            self.reader_seen = asyncio.get_running_loop().time()
        self._check_orphaned()

    def _check_orphaned(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.readers:
            self.reader_seen = now
        elif now - self.reader_seen >= self.config.orphan_timeout_s:
            self.stop(Stop.ORPHANED)

    async def _mirror_beat(self, mirror: Mirror) -> tuple[bool, bool] | None:
        try:
            return await mirror.beat()
        except Exception:
            self.mirror = None
            self.on_store_failure()
            return None

    # ---- stopping and reading ----------------------------------------------------------------

    def stop(self, reason: Stop) -> None:
        if self.stopped is None and not self.finishing and not self.task.done():
            self.stopped = reason
            # A task cancelled before its first step never runs its body, and so would never
            # end its log (readers would wait forever) nor settle its accounting: one that
            # has not started sees `stopped` as it starts instead.
            if self.running:
                self.task.cancel()

    def interrupt(self, reason: Interrupt) -> None:
        """The drain's deadline passed: end it for every reader (SPEC §6)."""
        if reason is Interrupt.SHUTDOWN:
            self.stop(Stop.SHUTDOWN)

    def reader(self, after: int) -> Reader:
        self.readers += 1

        def detach() -> None:
            self.readers -= 1
            self.reader_seen = asyncio.get_running_loop().time()

        replayed = max(0, self.log.last_seq() - after)
        reader = Reader(
            self.model, self.provider, self.log.follow(after), replayed, "memory", detach
        )
        reader.origin = self.relay.trace
        return reader


# A finished record, as `Retained` keeps it: this header (truncated, the terminal event's
# kind, the lengths of the owner, model and provider names, the count of deltas, the length of
# the terminal event), those names in UTF-8, each delta's end offset in the text (uint32), the
# deltas' text as one UTF-8 blob, and the terminal event, encoded. Plain bytes in the
# retention ring: nothing for the allocator to fragment or the collector to walk.
RECORD_HEADER = struct.Struct("=?cIIIII")
OFFSET = "I"  # each delta's end in the blob (a stream's log is capped far below 4 GiB)


def finished_record(generation: Generation) -> list[bytes]:
    """What an ended generation leaves behind in memory (no Redis mirror) for the readers of
    its retention time, as the parts of one record: who may read it and its events. The
    generation itself (relay, upstream response, accounting, task) goes."""
    log = generation.log
    # A log that dropped its oldest events is never attached again: nothing to keep.
    held = [] if log.truncated else log.held()
    encoded = [_blob_entry(payload) for payload in held if not is_terminal(payload)]
    ends = array(OFFSET, accumulate(map(len, encoded))).tobytes()
    kind, terminal = encode(held[-1]) if held else (FAILURE, b"")
    owner = generation.owner.encode()
    model, provider = generation.model.encode(), generation.provider.encode()
    header = RECORD_HEADER.pack(
        log.truncated, kind, len(owner), len(model), len(provider), len(encoded), len(terminal)
    )
    return [header, owner, model, provider, ends, b"".join(encoded), terminal]


# In a finished record's blob, a text delta is its UTF-8 bytes and a part is PART_MARK and its
# JSON; a text that happens to start with NUL gets one more NUL in front, so both read back.
PART_MARK = b"\x00p"


def _blob_entry(payload: Payload) -> bytes:
    if isinstance(payload, str):
        data = payload.encode()
        return b"\x00" + data if data.startswith(b"\x00") else data
    return PART_MARK + encode(payload)[1]


def _from_blob(data: bytes) -> Payload:
    if not data.startswith(b"\x00"):
        return data.decode()
    if data.startswith(PART_MARK):
        return decode({PART: data[len(PART_MARK) :]})
    return data[1:].decode()


class Finished:
    """A finished record, read: the registry's view for `attach`."""

    __slots__ = ("ends", "model", "owner", "provider", "terminal", "text", "truncated")
    ended = True

    def __init__(self, record: bytes) -> None:
        self.truncated, kind, *lengths = RECORD_HEADER.unpack_from(record)
        owner, model, provider, deltas, terminal = lengths
        at = RECORD_HEADER.size
        names = []
        for length in (owner, model, provider):
            names.append(record[at : at + length].decode())
            at += length
        self.owner, self.model, self.provider = names
        self.ends = array(OFFSET)
        self.ends.frombytes(record[at : at + deltas * self.ends.itemsize])
        at += deltas * self.ends.itemsize
        self.text = record[at : len(record) - terminal]
        self.terminal = (kind, record[len(record) - terminal :])

    def last_seq(self) -> int:
        """The terminal event's seq (only meaningful for a log that was not truncated)."""
        return len(self.ends)

    def reader(self, after: int) -> Reader:
        start, ends, text = after + 1, self.ends, self.text
        begin = ends[start - 1] if start > 0 else 0
        events: list[Event] = []
        for seq in range(start, len(ends)):
            end = ends[seq]
            events.append((seq, _from_blob(text[begin:end])))
            begin = end
        events.append((len(ends), decode({self.terminal[0]: self.terminal[1]})))
        return Reader(self.model, self.provider, _once(events), len(events), "memory")


async def _once(events: list[Event]) -> AsyncIterator[list[Event]]:
    yield events


RETAINED_KIND = "stream"  # an ended stream's events, in the process's retention budget


class Generations:
    """The registry: generations running (and, without a healthy Redis mirror, recently
    ended) in this process, and the Redis log for everyone else's."""

    def __init__(
        self,
        config: ResumeConfig,
        store: RedisLog | None,
        drain: Drain,
        metrics: Metrics,
        retained: Retained | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.drain = drain
        self.metrics = metrics
        self.local: dict[str, Generation] = {}  # running here
        # Ended here: their records are kept by the process's retention budget
        # (`resume_retained_max_bytes`, shared with whatever else is kept after its stream
        # ended) for resume_retention_s, or until it needs their room, the oldest first:
        # either way a reconnection then gets 204.
        if retained is None:
            retained = Retained(config.resume_retained_max_bytes, metrics)
        self.retained = retained
        retained.register(RETAINED_KIND, config.resume_retention_s)

    def store_failed(self) -> None:
        self.metrics.resume_store_failures.inc()

    async def start(
        self, stream_id: str, owner: str, relay: Relay, accounting: Accounting
    ) -> Generation | None:
        """Run the primed relay as a detached generation; None when it cannot be resumable
        (disabled, or the store is down: the caller serves it as a plain stream)."""
        if not self.config.enabled:
            return None
        mirror = None
        if self.store is not None:
            idle_s = relay.attempt.provider.config.idle_timeout
            tick_s = tick_for(idle_s, self.config.orphan_timeout_s)
            try:
                mirror = await self.store.create(
                    stream_id, owner, relay.model, relay.provider, idle_s, tick_s
                )
            except Exception:
                self.store_failed()
                return None
            if mirror is None:
                return None
        generation = Generation(
            stream_id, owner, relay, self.config, mirror, accounting, self.store_failed
        )
        self.local[stream_id] = generation
        self.drain.active.add(generation)
        generation.task.add_done_callback(lambda _: self._ended(generation))
        self.metrics.resumable_streams.inc()
        return generation

    def _ended(self, generation: Generation) -> None:
        self.drain.leave(generation)
        if generation.stopped is Stop.ORPHANED:
            self.metrics.orphan_cancellations.inc()
        self.local.pop(generation.id, None)
        if generation.mirror is not None:  # Redis holds it for everyone
            return
        self.retained.keep(RETAINED_KIND, generation.id, finished_record(generation))

    def ended_here(self, stream_id: str) -> bool:
        """Whether the stream ended in this process and its record is still kept."""
        return self.retained.holds(RETAINED_KIND, stream_id)

    async def attach(self, stream_id: str, owner: str, after: int) -> Reader | None:
        """A reader after `after`; None when there is nothing to resume (204)."""
        here: Generation | Finished | None = self.local.get(stream_id)
        if here is None and (record := self.retained.get(RETAINED_KIND, stream_id)) is not None:
            here = Finished(record)
        if here is not None:
            if here.owner != owner:
                raise NotFound("no such stream")
            last_seq = here.last_seq()
            if here.truncated or after > last_seq or (here.ended and after == last_seq):
                return None
            return here.reader(after)
        if self.store is None:
            return None
        try:
            meta = await self.store.lookup(stream_id)
        except Exception:
            self.store_failed()
            return None
        if meta is None:
            return None
        if meta.owner != owner:
            raise NotFound("no such stream")
        if (
            meta.state == "gone"
            or after > meta.last_seq  # ahead of anything ever sent
            or (meta.state == "ended" and after == meta.last_seq)
        ):
            return None
        events = self.store.follow(stream_id, after, meta.idle_s)
        return Reader(meta.model, meta.provider, events, max(0, meta.last_seq - after), "redis")

    async def cancel(self, stream_id: str, owner: str) -> None:
        generation = self.local.get(stream_id)
        if generation is not None:
            if generation.owner != owner or generation.stopped or generation.ended:
                raise NotFound("no such running stream")
            generation.stop(Stop.CANCELLED)
            await asyncio.wait({generation.task})
            return
        if self.store is None or self.ended_here(stream_id):
            raise NotFound("no such running stream")
        try:
            done = await self.store.cancel(stream_id, owner)
        except Exception:
            self.store_failed()
            raise Unavailable("the resume store is unreachable") from None
        if done != 1:
            raise NotFound("no such running stream")

    async def close(self) -> None:
        """Shutdown: generations end (the drain's deadline stops the slow ones)."""
        running = [g.task for g in self.local.values() if not g.task.done()]
        if not self.drain.draining:
            for generation in self.local.values():
                generation.stop(Stop.SHUTDOWN)
        if running:
            await asyncio.wait(running)
