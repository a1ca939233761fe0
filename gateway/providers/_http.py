"""The single boundary between httpx and the gateway's typed errors, and the shared clients."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.errors import (
    UpstreamAuth,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_for_status,
)
from gateway.providers._transport import StreamingTransport
from gateway.providers.base import ProviderSettings
from gateway.redaction import KEY_SHAPED

__all__ = [
    "HTTPProviderConfig",
    "build_client",
    "drain_after_end",
    "find_message",
    "in_stream_error",
    "open_stream",
    "parse_event",
    "sanitise",
    "translate_errors",
]

ERROR_BODY_LIMIT = 64 * 1024
MESSAGE_LIMIT = 500


class HTTPProviderConfig(ProviderSettings):
    """An upstream reached over HTTP. The key is resolved once, here, into a secret."""

    base_url: str
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="before")
    @classmethod
    def _resolve_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("api_key") is None:
            value = os.environ.get(data.get("api_key_env") or "")
            if value:
                data = {**data, "api_key": value}
        return data

    def optional_key(self) -> str | None:
        """The key, or None for a server that takes none (no api_key and no api_key_env).

        A named variable that is unset is a mistake, not a keyless server: fail before
        calling anyone, with a message that says what to set.
        """
        if self.api_key is None and not self.api_key_env:
            return None
        return self.require_key()

    def require_key(self) -> str:
        if self.api_key is None:
            where = f"set {self.api_key_env}" if self.api_key_env else "set api_key"
            raise UpstreamAuth(f"no API key configured for this provider ({where})")
        return self.api_key.get_secret_value()


def build_client(config: ProviderSettings, *, mockable: bool = False) -> httpx.AsyncClient:
    """One pooled client per provider, built in the app's lifespan.

    The read time-out starts as `first_token_timeout` (it covers the wait for the response
    headers); `open_stream` lowers it to `idle_timeout` once the headers are in. `mockable`
    selects httpx's stock transport, which respx can intercept (adapter unit tests).
    """
    timeout = httpx.Timeout(
        connect=config.connect_timeout,
        read=max(config.first_token_timeout, config.idle_timeout),
        write=config.connect_timeout,
        pool=config.connect_timeout,
    )
    return httpx.AsyncClient(
        timeout=timeout,
        transport=None if mockable else StreamingTransport(config.max_connections),
        follow_redirects=False,
        trust_env=False,
    )


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn httpx's exceptions into the gateway's, keeping the cause."""
    try:
        yield
    except UpstreamError:
        raise
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise UpstreamTimeout("timed out connecting to the upstream") from exc
    except httpx.ReadTimeout as exc:
        raise UpstreamTimeout("the upstream went silent (idle timeout)") from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout("timed out talking to the upstream") from exc
    except httpx.ConnectError as exc:
        raise UpstreamUnavailable("could not connect to the upstream") from exc
    except httpx.DecodingError as exc:
        raise UpstreamProtocolError("the upstream sent an undecodable body") from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"the upstream connection failed ({type(exc).__name__})") from exc


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    config: ProviderSettings,
    request: httpx.Request,
    *,
    content_type: str,
) -> AsyncIterator[httpx.Response]:
    """Send `request` and yield the streaming response once it is known to be a stream.

    A non-2xx status, or a 2xx whose content type is not `content_type`, raises the mapped
    error before the caller sees a byte. Time-outs and connection failures are translated.
    """
    with translate_errors():
        response = await client.send(request, stream=True)
        try:
            if not response.is_success:
                raise await _status_error(response)
            if content_type not in response.headers.get("content-type", ""):
                raise await _content_type_error(response)
            # From here on, the read time-out is the silence allowed between body reads.
            timeouts = response.request.extensions.get("timeout")
            if isinstance(timeouts, dict):
                timeouts["read"] = config.idle_timeout
            yield response
        finally:
            await response.aclose()


async def _read_bounded(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return bytes(body[:ERROR_BODY_LIMIT])


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


async def _status_error(response: httpx.Response) -> UpstreamError:
    body = await _read_bounded(response)
    found = find_message(_parse_json(body))
    message = sanitise(found or f"the upstream answered HTTP {response.status_code}")
    return error_for_status(
        response.status_code, message, retry_after=retry_after(response.headers)
    )


async def _content_type_error(response: httpx.Response) -> UpstreamError:
    # Some servers answer a 2xx JSON error instead of a stream (vLLM, proxies).
    body = _parse_json(await _read_bounded(response))
    if find_message(body):
        return in_stream_error(body)
    got = response.headers.get("content-type", "none")
    return UpstreamProtocolError(f"the upstream answered {sanitise(got)} instead of a stream")


def sanitise(message: str) -> str:
    """Make an upstream's message safe to show a client: one short printable line, no keys."""
    printable = "".join(ch if ch.isprintable() else " " for ch in message)
    text = KEY_SHAPED.sub("[redacted]", " ".join(printable.split()))
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1] + "…"
    return text


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if value := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def find_message(body: Any) -> str | None:
    """The human message in any provider's error shape.

    `{"error": {"message": …}}` (OpenAI, Anthropic, Gemini, vLLM), `{"error": "…"}` (Ollama,
    llama.cpp), `{"message": …}` (older vLLM), `{"detail": …}` (FastAPI-based servers), and
    Gemini's one-element list around any of them.
    """
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        body = error
    elif isinstance(error, str) and error:
        return error
    for key in ("message", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


_RATE_LIMITED = ("rate_limit", "resource_exhausted", "429", "quota")
_REJECTED = ("invalid_request", "invalid_argument", "context_length", "not_found", "400", "404")
_AUTH = ("auth", "permission", "401", "403")


def in_stream_error(body: Any, kind: object = None) -> UpstreamError:
    """An error that arrived inside a 2xx stream, classified by its type or code."""
    message = sanitise(find_message(body) or "the upstream reported an error mid-stream")
    error = body.get("error") if isinstance(body, dict) else None
    if kind is None and isinstance(error, dict):
        kind = error.get("type") or error.get("status") or error.get("code")
    label = str(kind or "").lower()
    if "overloaded" in label:  # Anthropic's overloaded_error: its clients get their 529
        return error_for_status(529, message)
    if any(word in label for word in _RATE_LIMITED):
        return error_for_status(429, message)
    if any(word in label for word in _REJECTED):
        return error_for_status(400, message)
    if any(word in label for word in _AUTH):
        return error_for_status(401, message)
    return UpstreamUnavailable(message)


def parse_event(data: bytes) -> Any:
    """One event's JSON. Invalid UTF-8 becomes U+FFFD (the policy httpx and llama.cpp use)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return orjson.loads(data.decode("utf-8", "replace"))
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("the upstream sent malformed JSON in its stream") from None


async def drain_after_end(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows the terminal event (normally just the body's end), briefly.

    Reading to the end lets the connection go back to the pool instead of being closed; the
    bound keeps a server that holds the connection open from delaying the client's end.
    """
    with suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_AFTER_END_S):
            async for _ in chunks:
                pass


DRAIN_AFTER_END_S = 0.25
