"""Incremental server-sent-events decoder: bytes in, events out (WHATWG HTML §9.2.6).

Written by hand because the library options split lines wrongly or late: httpx's
`aiter_lines()` also splits on U+2028/U+0085, which are legal raw inside JSON strings, and
httpx-sse holds a trailing CR back for a whole network read. This decoder frames lines on the
bytes CR, LF and CRLF (a CRLF may be split across reads), never decodes a partial UTF-8
sequence, strips one leading BOM, ignores comments, and dispatches only on a blank line. It is
linear in the input however it is chunked.

Memory is bounded: an unfinished line, or one event's data, over `max_event_bytes` raises
`UpstreamProtocolError` as soon as the read that crosses the bound arrives (a hostile or broken
upstream cannot make the gateway hold a 64 MiB line, nor wait for its end).

One deliberate departure: an `error:` field, which old llama.cpp servers sent for mid-stream
failures and which the spec would ignore, is dispatched as an `error` event so that a failure
is never mistaken for a clean finish.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.errors import UpstreamProtocolError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "event_too_large"]

_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


def event_too_large(limit: int) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"the upstream sent an event or line over max_event_bytes ({limit} bytes)"
    )


class SSEEvent(NamedTuple):
    event: str
    data: bytes


class SSEDecoder:
    __slots__ = (
        "_data",
        "_event",
        "_limit",
        "_overflow",
        "_size",
        "_skip_lf",
        "_started",
        "_tail",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._tail = bytearray()
        self._skip_lf = False
        self._started = False
        self._data: list[bytes] = []
        self._size = 0  # bytes of data in the event being built
        self._event = ""
        self._limit = max_event_bytes
        self._overflow = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Take one network read; return the events it completes, in order."""
        if self._overflow:
            raise event_too_large(self._limit)
        if not chunk:
            # An empty read says nothing about a pending CRLF: keep waiting for its LF.
            return []
        if self._skip_lf and chunk[0] == 0x0A:
            chunk = chunk[1:]
        self._skip_lf = False
        if b"\r" in chunk:
            # A CR at the very end may be the first half of a CRLF: end the line now (no
            # delay for CR-only framing) and drop the LF if it opens the next read.
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            self._tail += chunk
            if len(self._tail) > self._limit:
                raise event_too_large(self._limit)
            return []
        if self._started and not (self._tail or self._data or self._event):
            return self._feed_blocks(chunk)
        lines = chunk.split(b"\n")
        if self._tail:
            lines[0] = bytes(self._tail) + lines[0]
        self._tail = bytearray(lines.pop())
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line, events)
        return self._checked(events)

    def _feed_blocks(self, chunk: bytes) -> list[SSEEvent]:
        """`feed` for a read that starts at an event boundary (the usual case): each complete
        event that is one `data: ` line becomes an event without going line by line (two
        `_line` calls and a partition per event were most of the decoding cost); any other
        event goes through `_line`, exactly as in `feed`."""
        blocks = chunk.split(b"\n\n")
        rest = blocks.pop()  # after the last blank line: complete lines and a partial one
        events: list[SSEEvent] = []
        limit = self._limit
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block and len(block) - 6 <= limit:
                events.append(SSEEvent("message", block[6:]))
                continue
            for line in block.split(b"\n"):
                self._line(line, events)
            self._line(b"", events)
        lines = rest.split(b"\n")
        self._tail = bytearray(lines.pop())
        for line in lines:
            self._line(line, events)
        return self._checked(events)

    def _checked(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """A partial line past the limit fails the read, or, when the read completed events,
        the next one: the events it completed are handed out first."""
        if len(self._tail) > self._limit:
            if not events:
                raise event_too_large(self._limit)
            self._overflow = True
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not self._started:
            self._started = True
            if line.startswith(_BOM):
                line = line[3:]
        if not line:
            if self._data:
                events.append(SSEEvent(self._event or "message", b"\n".join(self._data)))
                self._data = []
                self._size = 0
            self._event = ""
            return
        if line[0] == 0x3A:  # ":" opens a comment (keep-alives such as ": ping")
            return
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._size += len(value)
            if self._size > self._limit:
                raise event_too_large(self._limit)
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        elif field == b"error":
            events.append(SSEEvent("error", value))
        # "id", "retry" and unknown fields carry nothing a relay needs.
