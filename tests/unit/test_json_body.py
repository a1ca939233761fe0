"""Request bodies are strict JSON objects, and numbers reach the upstream as the client wrote
them: an integer that orjson would read as a float is refused, not rounded."""

from __future__ import annotations

import pytest

from gateway.api._common import json_object
from gateway.errors import InvalidRequest


@pytest.mark.parametrize(
    "number", ["-9223372036854775809", "18446744073709551616", "123456789012345678901234567890"]
)
def test_an_integer_beyond_64_bits_is_refused(number: str) -> None:
    with pytest.raises(InvalidRequest, match="beyond 64 bits"):
        json_object(b'{"model": "m", "seed": %s}' % number.encode())


@pytest.mark.parametrize(
    "body",
    [
        b'{"seed": -9223372036854775808, "n": 18446744073709551615}',  # the ends of the range
        b'{"id": "12345678901234567890123", "x": 1.2345678901234567890}',  # a string, a float
        b'{"x": 12345678901234567890e0}',  # a float written with many digits
    ],
)
def test_long_digit_runs_that_orjson_reads_exactly_pass(body: bytes) -> None:
    assert isinstance(json_object(body), dict)
