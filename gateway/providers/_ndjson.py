"""Incremental NDJSON framing: bytes in, complete JSON lines out.

Lines end at the byte LF only (never at U+2028/U+0085, which may stand raw inside JSON
strings), blank lines are skipped, and a last line without a newline is handed out by
`close()`. Lines stay bytes so that the adapter's JSON parser decodes UTF-8 itself. An
unfinished line over `max_event_bytes` raises at once (bounded memory, a prompt error).
"""

from __future__ import annotations

from gateway.providers._sse import DEFAULT_MAX_EVENT_BYTES, event_too_large

__all__ = ["NDJSONDecoder"]


class NDJSONDecoder:
    __slots__ = ("_limit", "_overflow", "_tail")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._tail = bytearray()
        self._limit = max_event_bytes
        self._overflow = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._overflow:
            raise event_too_large(self._limit)
        if b"\n" not in chunk:
            self._tail += chunk
            if len(self._tail) > self._limit:
                raise event_too_large(self._limit)
            return []
        lines = chunk.split(b"\n")
        if self._tail:
            lines[0] = bytes(self._tail) + lines[0]
        self._tail = bytearray(lines.pop())
        complete = [line for line in lines if line.strip()]
        if len(self._tail) > self._limit:
            if not complete:
                raise event_too_large(self._limit)
            self._overflow = True  # hand out the lines this read completed; fail next time
        return complete

    def close(self) -> list[bytes]:
        """The unterminated last line, if the stream ended without a newline."""
        tail, self._tail = bytes(self._tail), bytearray()
        return [tail] if tail.strip() else []
