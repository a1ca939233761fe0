"""Incremental NDJSON framing: bytes in, complete JSON lines out.

Lines end at the byte LF only (never at U+2028/U+0085, which may stand raw inside JSON
strings), blank lines are skipped, and a last line without a newline is handed out by
`close()`. Lines stay bytes so that the adapter's JSON parser decodes UTF-8 itself.
"""

from __future__ import annotations

__all__ = ["NDJSONDecoder"]


class NDJSONDecoder:
    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._tail += chunk
            return []
        lines = chunk.split(b"\n")
        if self._tail:
            lines[0] = bytes(self._tail) + lines[0]
        self._tail = bytearray(lines.pop())
        return [line for line in lines if line.strip()]

    def close(self) -> list[bytes]:
        """The unterminated last line, if the stream ended without a newline."""
        tail, self._tail = bytes(self._tail), bytearray()
        return [tail] if tail.strip() else []
