"""What every route shares: request ids, bounded body reading, strict JSON parsing."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequest, RequestTooLarge
from gateway.observability import request_id_of

__all__ = [
    "json_body",
    "json_object",
    "parse_json",
    "query_parameters",
    "read_body",
    "request_id",
    "validate",
    "validation_message",
]

M = TypeVar("M", bound=BaseModel)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting a route's JSON body (the routes parse it themselves, to
    control the byte limit, strict JSON and the error envelope)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def query_parameters(model: type[BaseModel], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """`openapi_extra` documenting a model's fields as query parameters (so that /docs can
    "Try it out" a GET route that validates its query string itself)."""
    properties = model.model_json_schema()["properties"]
    parameters = [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in properties.items()
        if name not in skip
    ]
    return {"parameters": parameters}


def request_id(request: Request) -> str:
    """The request's id (the client's sane X-Request-ID, else a new one)."""
    return request_id_of(request.scope)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as more than `limit` bytes arrive (chunked too)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"the body is larger than {limit} bytes")
    return bytes(body)


def parse_json(body: bytes, model: type[M]) -> M:
    """Strict JSON (UTF-8, an object) validated into `model`; anything else is a 422."""
    return validate(model, json_object(body))


def json_object(body: bytes) -> dict[str, Any]:
    """Strict JSON (UTF-8) that must be an object; anything else is a 422."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    if _LONG_DIGITS.search(body) is not None:
        _refuse_wide_integers(body)
    return data


# orjson reads an integer beyond 64 bits as the nearest float: the native path, which sends
# the body up as it was parsed, would change the client's number. Such an integer has at least
# 19 digits; only a body with a run of them (rare: ids are strings) is read again to tell.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_INT_RANGE = range(-(2**63), 2**64)


def _refuse_wide_integers(body: bytes) -> None:
    def integer(text: str) -> int:
        value = int(text)
        if value not in _INT_RANGE:
            raise InvalidRequest(f"the body has an integer beyond 64 bits ({text[:40]})")
        return value

    json.loads(body, parse_int=integer)


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(validation_message(exc)) from None


def validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)
