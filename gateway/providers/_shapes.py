"""Reading an upstream's JSON without trusting its shape (SPEC §5.1).

An event's JSON is valid or not, but even valid JSON may hold a string where an object
belongs or a number where text belongs. Adapters read each field they need through these
helpers: a missing field or `null` is "absent" (providers omit freely), any other wrong type
is `UpstreamProtocolError`. In particular a number (or object) where text belongs is an error,
not a silently skipped delta: an upstream that sends it is broken, and the client must not be
handed an answer with holes in it as if it were whole.

Plain functions and `isinstance`, no validation models: this runs for every upstream event.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import UpstreamProtocolError

__all__ = ["count", "items", "obj", "object_at", "text", "wrong_shape"]

_EMPTY: dict[str, Any] = {}
_NAMES = {dict: "an object", list: "a list", str: "text", bool: "a boolean"}


def wrong_shape(where: str, expected: str, value: Any) -> UpstreamProtocolError:
    got = _NAMES.get(type(value)) or ("a number" if isinstance(value, int | float) else "null")
    return UpstreamProtocolError(f"the upstream sent {got} as {where}, where {expected} belongs")


def object_at(value: Any, where: str) -> dict[str, Any]:
    """`value` itself must be an object (an event's top level)."""
    if isinstance(value, dict):
        return value
    raise wrong_shape(where, "an object", value)


def obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """An optional object field; absent is an empty object (never to be mutated)."""
    value = parent.get(key)
    if isinstance(value, dict):
        return value
    if value is None:
        return _EMPTY
    raise wrong_shape(key, "an object", value)


def items(parent: dict[str, Any], key: str) -> list[Any]:
    """An optional list field; absent is an empty list."""
    value = parent.get(key)
    if isinstance(value, list):
        return value
    if value is None:
        return []
    raise wrong_shape(key, "a list", value)


def text(parent: dict[str, Any], key: str) -> str | None:
    """An optional text field."""
    value = parent.get(key)
    if value is None or isinstance(value, str):
        return value
    raise wrong_shape(key, "text", value)


def count(parent: dict[str, Any], key: str) -> int | None:
    """An optional token count."""
    value = parent.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise wrong_shape(key, "a whole number", value)
