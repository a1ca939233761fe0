from __future__ import annotations

import pytest

from gateway.errors import UpstreamProtocolError
from gateway.providers._ndjson import NDJSONDecoder
from tests.conftest import wire
from tests.splits import every_split, multibyte_splits


def decode(pieces: list[bytes]) -> list[bytes]:
    decoder = NDJSONDecoder()
    lines: list[bytes] = []
    for piece in pieces:
        lines.extend(decoder.feed(piece))
    return lines + decoder.close()


def test_ndjson_same_lines_under_every_split() -> None:
    body = wire("ollama/basic.ndjson")
    whole = decode([body])
    assert len(whole) == 4
    for pieces in every_split(body):
        assert decode(pieces) == whole
    for pieces in multibyte_splits(body):
        assert decode(pieces) == whole


def test_ndjson_last_line_without_newline_is_returned_by_close() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert decoder.feed(b":2}") == []
    assert decoder.close() == [b'{"b":2}']


def test_ndjson_blank_lines_are_skipped() -> None:
    assert decode([b'\n{"a":1}\n\n  \n{"b":2}\n']) == [b'{"a":1}', b'{"b":2}']


def test_ndjson_raw_unicode_separators_do_not_split_lines() -> None:
    line = '{"t":"a\u2028b\u0085c"}'.encode()
    assert decode([line + b"\n"]) == [line]


def test_ndjson_unfinished_line_over_the_limit_fails_promptly() -> None:
    decoder = NDJSONDecoder(4096)
    assert decoder.feed(b'{"a":1}\n' + b"x" * 4000) == [b'{"a":1}']
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decoder.feed(b"x" * 200)
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        NDJSONDecoder(4096).feed(b"y" * 5000)


def test_ndjson_lines_before_an_overlong_line_are_handed_out_first() -> None:
    decoder = NDJSONDecoder(4096)
    assert decoder.feed(b'{"a":1}\n' + b"x" * 5000) == [b'{"a":1}']
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decoder.feed(b"x")
