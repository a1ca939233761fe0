"""The single boundary between httpx and the gateway's typed errors, and the shared clients."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import certifi
import httpx
import orjson
from pydantic import (
    Field,
    FilePath,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from gateway import __version__
from gateway.errors import (
    UpstreamAuth,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_for_status,
)
from gateway.providers._client import AiohttpTransport, ClientOptions, MalformedResponse
from gateway.providers._sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent
from gateway.providers.auth import RequestAuth
from gateway.providers.base import Batch, ProviderSettings, StreamOutcome
from gateway.redaction import KEY_SHAPED

__all__ = [
    "HTTPProviderConfig",
    "UpstreamClient",
    "body_chunks",
    "build_client",
    "drain_after_end",
    "event_stream",
    "find_message",
    "in_stream_error",
    "open_stream",
    "parse_event",
    "read_batch",
    "sanitise",
    "translate_errors",
]

MASK = "**********"  # how pydantic shows a SecretStr
ERROR_BODY_LIMIT = 64 * 1024
MESSAGE_LIMIT = 500

log = logging.getLogger("gateway.upstream")


class HTTPProviderConfig(ProviderSettings):
    """An upstream reached over HTTP. The key is resolved once, here, into a secret."""

    base_url: str
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # SPEC §5.1: the provider's own proxy (else HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY),
    # private CAs added to the system's and certifi's roots, and a client certificate.
    proxy: str | None = None
    ca_file: FilePath | None = None
    client_cert: FilePath | None = None
    client_key: FilePath | None = None
    max_event_bytes: int = Field(DEFAULT_MAX_EVENT_BYTES, ge=1024)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None:
            url = httpx.URL(value)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError("must be an http:// or https:// proxy URL")
        return value

    @field_serializer("proxy")
    def _proxy_without_password(self, value: str | None) -> str | None:
        # `gateway check-config` prints the configuration: a proxy's password stays hidden.
        if value is None or not httpx.URL(value).password:
            return value
        return str(httpx.URL(value).copy_with(password=MASK))

    @model_validator(mode="after")
    def _cert_with_key(self) -> HTTPProviderConfig:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self

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


class UpstreamClient(httpx.AsyncClient):
    """httpx's client for one provider, driven straight through its transport.

    The gateway uses none of what `AsyncClient.send()` adds around a transport (auth flows,
    cookies, redirects, event hooks, base URLs, default headers): requests are built here
    with the body serialised once by orjson, and sent to the transport directly. Measured on
    one-chunk streams, `build_request()` and `send()` were about a third of the gateway's
    per-request CPU (docs/PERFORMANCE.md). The client stays an `httpx.AsyncClient`, so
    respx and everything else that knows httpx still works.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout) -> None:
        super().__init__(
            timeout=timeout, transport=transport, follow_redirects=False, trust_env=False
        )
        self.transport = transport
        self._timeouts = timeout.as_dict()

    def post_json(
        self,
        url: str | httpx.URL,
        body: Any,
        headers: dict[str, str],
        auth: RequestAuth | None = None,
    ) -> httpx.Request:
        """A POST of `body` as JSON; `auth` (a vendor's signer) adds its headers last, over
        the URL and the serialised body (`gateway.providers.auth`)."""
        headers["Content-Type"] = "application/json"
        headers.setdefault("User-Agent", USER_AGENT)
        trace = TRACE_HEADERS.get()
        if trace is not None:
            headers.update(trace)
        # orjson's result keeps its 4 KiB working buffer however short the JSON, and the
        # request lives as long as its stream: an exact copy frees it (docs/PERFORMANCE.md).
        content = bytes(memoryview(orjson.dumps(body)))
        extensions: dict[str, Any] = {"timeout": self._timeouts}
        if auth is not None:
            url = httpx.URL(url)
            headers.update(auth.headers("POST", url, content))
            extensions["gateway_auth"] = auth  # told when the upstream refuses it
        return httpx.Request("POST", url, content=content, headers=headers, extensions=extensions)


USER_AGENT = f"llm-token-relay/{__version__}"
# The attempt's W3C trace context (`traceparent`), set by gateway.tracing for the attempt under
# way: a context variable, so that it reaches every adapter's request without a parameter, and
# costs one lookup per upstream request when tracing is off.
TRACE_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("trace_headers", default=None)


def build_client(
    config: ProviderSettings,
    *,
    mockable: bool = False,
    socket_factory: Callable[[Any], Any] | None = None,
) -> UpstreamClient:
    """One pooled client per provider, built in the app's lifespan (TLS set up here, once).

    The transport is aiohttp's (`_client.AiohttpTransport`); it reads the time-outs from
    `config`, the read time-out being `first_token_timeout` until the response headers are
    in and `idle_timeout` after. `mockable` selects httpx's stock transport, which respx can
    intercept (adapter unit tests); `socket_factory` lets tests shape the upstream sockets.
    """
    timeout = httpx.Timeout(
        connect=config.connect_timeout,
        read=max(config.first_token_timeout, config.idle_timeout),
        write=config.connect_timeout,
        pool=config.connect_timeout,
    )
    if mockable:
        return UpstreamClient(httpx.AsyncHTTPTransport(), timeout)
    http = config if isinstance(config, HTTPProviderConfig) else None
    options = ClientOptions(
        max_connections=config.max_connections,
        connect_timeout=config.connect_timeout,
        headers_timeout=max(config.first_token_timeout, config.idle_timeout),
        idle_timeout=config.idle_timeout,
        proxy=http.proxy if http else None,
        ssl_context=tls_context(http) if http else None,
    )
    return UpstreamClient(AiohttpTransport(options, socket_factory=socket_factory), timeout)


def tls_context(config: HTTPProviderConfig) -> ssl.SSLContext:
    """Verify against the system's roots and certifi's, plus SSL_CERT_FILE / SSL_CERT_DIR
    and the provider's `ca_file` (private CAs are added, never a replacement).

    Built once per process for the same files (loading the bundles costs 50 ms each: every
    provider of a gateway, and every app a test suite builds, paid it); a file changed on
    disk (its modification time) gets a context of its own."""
    cert_file, cert_dir = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    given = (config.ca_file, config.client_cert, config.client_key)
    files = (cert_file, *(None if name is None else str(name) for name in given))
    return _tls_context(tuple((name, _mtime(name)) for name in files), cert_dir)


def _mtime(name: str | None) -> int | None:
    try:
        return os.stat(name).st_mtime_ns if name else None
    except OSError:
        return None


@functools.lru_cache(maxsize=16)
def _tls_context(
    files: tuple[tuple[str | None, int | None], ...], cert_dir: str | None
) -> ssl.SSLContext:
    (cert_file, _), (ca_file, _), (client_cert, _), (client_key, _) = files
    context = ssl.create_default_context()  # the system's roots (OpenSSL's default paths)
    context.load_verify_locations(cafile=certifi.where())
    if cert_file and Path(cert_file).is_file():
        context.load_verify_locations(cafile=cert_file)
    if cert_dir and Path(cert_dir).is_dir():
        context.load_verify_locations(capath=cert_dir)
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn httpx's exceptions into the gateway's, naming the upstream host and the reason.

    The reason comes from the transport (refused, DNS, certificate not trusted, reset...);
    it never holds a header, so never a key, and is sanitised all the same.
    """
    try:
        yield
    except UpstreamError:
        raise
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise UpstreamTimeout(f"timed out connecting to the upstream {_host(exc)}") from exc
    except httpx.ReadTimeout as exc:
        raise UpstreamTimeout(f"the upstream {_host(exc)} went silent (idle timeout)") from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"timed out talking to the upstream {_host(exc)}") from exc
    except (httpx.ConnectError, httpx.ProxyError) as exc:
        message = f"could not connect to the upstream {_host(exc)}: {exc}"
        raise UpstreamUnavailable(sanitise(message)) from exc
    except (httpx.DecodingError, MalformedResponse) as exc:
        message = f"the upstream {_host(exc)} sent an undecodable response: {exc}"
        raise UpstreamProtocolError(sanitise(message)) from exc
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        message = f"the connection to the upstream {_host(exc)} failed: {reason}"
        raise UpstreamUnavailable(sanitise(message)) from exc


def _host(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised outside any request
        return "(unknown host)"
    return url.host if url.port is None else f"{url.host}:{url.port}"


@asynccontextmanager
async def open_stream(
    client: UpstreamClient,
    request: httpx.Request,
    *,
    content_type: str,
) -> AsyncIterator[httpx.Response]:
    """Send `request` and yield the streaming response once it is known to be a stream.

    A non-2xx status, or a 2xx whose content type is not `content_type`, raises the mapped
    error before the caller sees a byte. Time-outs and connection failures are translated.
    """
    with translate_errors():
        try:
            response = await client.transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request  # as AsyncClient.send() would: errors name the host
            raise
        try:
            if response.is_redirect:
                raise _redirect_error(response)
            if not response.is_success:
                if response.status_code in (401, 403) and (
                    auth := request.extensions.get("gateway_auth")
                ):
                    auth.refused()  # a revoked or rotated credential: renew it now
                raise await _status_error(response)
            if content_type not in response.headers.get("content-type", ""):
                raise await _content_type_error(response, content_type)
            yield response
        finally:
            await response.aclose()


def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as the network delivers it, one read at a time.

    Straight from the transport's stream (no httpx layers per read), unless the upstream
    compressed it: then httpx's decoders run.
    """
    if response.headers.get("content-encoding", "identity") == "identity":
        return aiter(response.stream)  # type: ignore[arg-type]  # always async here
    return response.aiter_bytes()


def _redirect_error(response: httpx.Response) -> UpstreamError:
    # Redirects are never followed: the request carries a key, and a configured base_url
    # that redirects is a configuration to fix, not a hop to take silently.
    return UpstreamProtocolError(
        f"the upstream answered HTTP {response.status_code} (a redirect, which the gateway "
        "does not follow: check the provider's base_url)"
    )


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


async def _content_type_error(response: httpx.Response, expected: str) -> UpstreamError:
    # Some servers answer a 2xx JSON error instead of a stream (vLLM, proxies).
    body = _parse_json(await _read_bounded(response))
    if find_message(body):
        return in_stream_error(body)
    got = sanitise(response.headers.get("content-type", "none"))
    return UpstreamProtocolError(f"the upstream answered {got} where {expected} was asked for")


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


# Bedrock's in-stream exceptions are named in camel case: throttlingException,
# validationException (model stream errors and unavailability fall through to unavailable).
_RATE_LIMITED = ("rate_limit", "resource_exhausted", "429", "quota", "throttling")
_REJECTED = (
    "invalid_request",
    "invalid_argument",
    "context_length",
    "not_found",
    "400",
    "404",
    "validation",
)
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


E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)
# Handles one decoded event: appends its text deltas to the batch; True at the end marker.
EventHandler = Callable[[E, StreamOutcome, Batch], bool]


def read_batch(
    events: Iterable[E], handle: EventHandler[E], outcome: StreamOutcome
) -> tuple[Batch, bool, Exception | None]:
    """The deltas of one network read's events: (batch, end marker seen, error that stopped it).

    An error comes back instead of being raised, so that the adapter yields the deltas that
    came before it in the same read first (the client sees all the text the upstream sent),
    then raises it.
    """
    batch: Batch = []
    try:
        for event in events:
            if handle(event, outcome, batch):
                return batch, True, None
    except Exception as exc:  # a GatewayError, or a bug the relay names upstream_protocol
        return batch, False, exc
    return batch, False, None


class Decoder(Protocol[E_co]):
    def feed(self, data: bytes) -> Iterable[E_co]: ...


Unfinished = Callable[[StreamOutcome], UpstreamError | None]


async def event_stream(
    client: UpstreamClient,
    request_for: Callable[[], httpx.Request],
    decoder: Decoder[E],
    handle: EventHandler[E],
    outcome: StreamOutcome,
    *,
    content_type: str,
    unfinished: Unfinished,
) -> AsyncIterator[Batch]:
    """A streaming adapter's whole exchange: one batch of deltas per network read.

    The adapter's `stream()` returns this generator itself (no generator of its own around
    it: one hop less per read) and supplies only its provider's knowledge: the request
    (built lazily, so that its errors come from the first `anext`), how to decode the body,
    what each event means (`handle`) and what a stream that just stops lacks
    (`unfinished`). After the end marker, what follows is drained and never an error.
    """
    async with open_stream(client, request_for(), content_type=content_type) as response:
        chunks = body_chunks(response)
        async for chunk in chunks:
            batch, ended, error = read_batch(decoder.feed(chunk), handle, outcome)
            if batch:
                yield batch
            if error is not None:
                raise error
            if ended:
                await drain_after_end(chunks, response)
                return
        if (error := unfinished(outcome)) is not None:
            raise error


def sse_stream(
    client: UpstreamClient,
    request_for: Callable[[], httpx.Request],
    max_event_bytes: int,
    handle: EventHandler[SSEEvent],
    outcome: StreamOutcome,
    unfinished: Unfinished,
) -> AsyncIterator[Batch]:
    """`event_stream` for the providers that answer with Server-Sent Events (OpenAI,
    Anthropic, Gemini): they differ only in the request and in what each event means."""
    return event_stream(
        client,
        request_for,
        SSEDecoder(max_event_bytes),
        handle,
        outcome,
        content_type="event-stream",
        unfinished=unfinished,
    )


async def drain_after_end(chunks: AsyncIterator[bytes], response: httpx.Response) -> None:
    """Read what follows the terminal event (normally just the body's end), briefly.

    Reading to the end lets the connection go back to the pool instead of being closed; the
    bound keeps a server that holds the connection open from delaying the client's end. The
    answer is complete: a connection that breaks now is not an error (SPEC §5.1). The usual
    case, the body's end read with the terminal event, costs no timer.
    """
    at_eof = getattr(response.stream, "at_eof", None)
    if at_eof is not None and at_eof():
        if inspect.isasyncgen(chunks):  # httpx's decoding reader (a compressed body)
            await chunks.aclose()
        return
    try:
        async with asyncio.timeout(DRAIN_AFTER_END_S):
            async for _ in chunks:
                pass
    except TimeoutError:
        pass
    except (httpx.HTTPError, UpstreamError) as exc:
        log.debug("upstream connection broke after the end of the answer: %s", exc)


DRAIN_AFTER_END_S = 0.25
