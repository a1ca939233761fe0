"""Server-sent events cut into whole events with their bytes kept exactly (the native path).

The translated path decodes events (`gateway.providers._sse`) and frames them again; the native
path relays the upstream's own bytes, so it only needs to know where each event ends (a blank
line) and, for the few events it reads, their `event:` and `data:` fields. `feed` returns the
events a network read completes, each as the exact bytes the upstream sent for it (its blank
line included); the concatenation of everything returned is the body up to its last complete
event, byte for byte, however the body was cut into reads.

Each event is handed on as a `str` holding its bytes one character per byte (latin-1): the
relay's batches are lists of `str`, and latin-1 is the one codec that round-trips any bytes
(broken UTF-8 included) and costs only a copy. `bytes_of` turns such a batch back.

Memory is bounded like the decoding path's: an unfinished event over `max_event_bytes` raises
`UpstreamProtocolError`.
"""

from __future__ import annotations

import re

from gateway.providers._sse import event_too_large

__all__ = ["RawEvents", "bytes_of", "fields"]

_EOL = re.compile(rb"\r\n|\r|\n")


class RawEvents:
    """Cuts an SSE body into events, each the exact bytes received (one read at a time)."""

    __slots__ = ("_cr", "_limit", "_tail")

    def __init__(self, max_event_bytes: int) -> None:
        self._tail = b""
        self._limit = max_event_bytes
        self._cr = False  # the last read ended an event on a CR that may be half a CRLF

    def feed(self, chunk: bytes) -> list[str]:
        """The events this read completes, in order, as latin-1 `str` of their bytes."""
        if not chunk:
            return []
        lead: list[str] = []
        if self._cr and chunk[0] == 0x0A:  # that CRLF's LF: relayed at once, on its own
            lead, chunk = ["\n"], chunk[1:]
        buffer = self._tail + chunk if self._tail else chunk
        if b"\r" in buffer:
            events, self._tail = _cut_any(buffer)
        else:
            events, self._tail = _cut_lf(buffer)
        if len(self._tail) > self._limit:
            raise event_too_large(self._limit)
        self._cr = not self._tail and buffer.endswith(b"\r")
        return lead + events if lead else events


def _cut_lf(buffer: bytes) -> tuple[list[str], bytes]:
    """The usual case, LF line ends only: events end at each `\\n\\n`."""
    end = buffer.rfind(b"\n\n")
    if end < 0:
        return [], buffer
    end += 2
    pieces = buffer[:end].split(b"\n\n")
    # The region ends with a separator, so the last piece is what follows the last one the
    # split used: "" or, after an odd run of line ends, "\n" (a blank line, kept in place).
    trailing = pieces.pop()
    events = [piece.decode("latin-1") + "\n\n" for piece in pieces]
    if trailing:
        events[-1] += trailing.decode("latin-1")
    return events, buffer[end:]


def _cut_any(buffer: bytes) -> tuple[list[str], bytes]:
    """CR, LF or CRLF line ends: an event ends at a line end that opens a line (a blank line).

    A CR at the very end of a read may be half of a CRLF: it ends the event now, and the LF
    that may open the next read is relayed on its own (`RawEvents.feed`): no byte is lost or
    moved, and a blank line dispatches nothing.
    """
    events: list[str] = []
    start = line_start = 0
    for match in _EOL.finditer(buffer):
        if match.start() == line_start:
            events.append(buffer[start : match.end()].decode("latin-1"))
            start = match.end()
        line_start = match.end()
    return events, buffer[start:]


def fields(event: str) -> tuple[str, bytes]:
    """An event's `event:` field ("" when none) and its `data:` lines joined (WHATWG §9.2.6)."""
    name = ""
    data: list[bytes] = []
    for line in _EOL.split(event.encode("latin-1")):
        if not line or line[0] == 0x3A:  # blank, or a comment
            continue
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    return name, b"\n".join(data)


def bytes_of(batch: list[str]) -> bytes:
    """The bytes of a batch of raw events, for the client."""
    if len(batch) == 1:
        return batch[0].encode("latin-1")
    return "".join(batch).encode("latin-1")
