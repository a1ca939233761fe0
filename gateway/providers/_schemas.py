"""JSON Schemas as the upstreams with a schema subset accept them (SPEC §4.9, "Schemas").

Gemini's `parametersJsonSchema` / `responseJsonSchema` take "only the following properties:
`$id $defs $ref $anchor type format title description enum items prefixItems minItems maxItems
minimum maximum anyOf oneOf properties additionalProperties required`" and `propertyOrdering`
(python-genai's `GenerateContentConfig.response_json_schema`). What else a client's schema holds
is either an annotation (`$schema`, `examples`, `default`, `deprecated`, `readOnly`, …), dropped
as it changes nothing the model is asked, or a constraint with no place there (`pattern`,
`minLength`, `exclusiveMinimum`, …), dropped too and listed in the docs: the model still gets
the types, names, descriptions and required fields, and the client validates what it gets.
`const` becomes a one-value `enum`. A schema that is not an object at all is a 400 naming where.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest

__all__ = ["gemini_schema"]

_KEPT = frozenset(
    {
        "$id",
        "$defs",
        "$ref",
        "$anchor",
        "type",
        "format",
        "title",
        "description",
        "enum",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "properties",
        "additionalProperties",
        "required",
        "propertyOrdering",
    }
)
_SCHEMA_MAPS = ("properties", "$defs")  # keyword -> {name: schema}
_SCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")  # keyword -> [schema]
_MAX_DEPTH = 64


def gemini_schema(schema: dict[str, Any], where: str) -> dict[str, Any] | None:
    """`schema` in Gemini's subset; None for an object schema with no properties (Gemini
    wants `parameters` left out then)."""
    if not isinstance(schema, dict):
        raise BadRequest(f"{where}: a JSON Schema must be an object")
    cleaned: dict[str, Any] = _clean(schema, where, 0)
    if cleaned.get("type") == "object" and not cleaned.get("properties") and len(cleaned) <= 2:
        return None
    return cleaned


def _clean(schema: Any, where: str, depth: int) -> Any:
    if isinstance(schema, bool):
        return schema  # `additionalProperties: false` and the like
    if not isinstance(schema, dict):
        raise BadRequest(f"{where}: a JSON Schema must be an object")
    if depth > _MAX_DEPTH:
        raise BadRequest(f"{where}: the schema nests deeper than {_MAX_DEPTH} levels")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "const":
            out["enum"] = [value]
        elif key not in _KEPT:
            continue
        elif key in _SCHEMA_MAPS:
            if not isinstance(value, dict):
                raise BadRequest(f"{where}.{key}: must be an object of schemas")
            out[key] = {
                name: _clean(sub, f"{where}.{key}.{name}", depth + 1) for name, sub in value.items()
            }
        elif key in _SCHEMA_LISTS:
            if not isinstance(value, list):
                raise BadRequest(f"{where}.{key}: must be a list of schemas")
            out[key] = [_clean(sub, f"{where}.{key}.{i}", depth + 1) for i, sub in enumerate(value)]
        elif key in ("items", "additionalProperties"):
            out[key] = _clean(value, f"{where}.{key}", depth + 1)
        else:
            out[key] = value
    return out
