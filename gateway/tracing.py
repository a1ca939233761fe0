"""OpenTelemetry traces (SPEC §4.4): a SERVER span per model request, a CLIENT span per
upstream attempt, with the GenAI semantic conventions' attributes.

Off unless an OTLP endpoint is configured (`[tracing]` or the standard OTEL_* variables); then
`build_tracing` returns None, the app keeps `state.tracing = None`, and a request pays one
`if` for it (the relay's attempt loop and the stream's end test `relay.trace`, which stays
None). Nothing here runs per chunk, except the answer's capture when `capture_content = true`.

Spans leave through the SDK's BatchSpanProcessor and OTLP/HTTP exporter (a background thread;
the request path only queues the ended span). The tracer provider is the app's own, never the
global one, so that several apps in one process (the tests) keep their traces apart. Nothing of
OpenTelemetry is imported until tracing is built: a process with tracing off never loads it.

Which span is which:

    POST /stream              SERVER   from admission to the end of the stream; continues the
                                       client's `traceparent`; first token as an event
      chat <upstream model>   CLIENT   one per attempt (retries, fallbacks): a failed one has an
                                       error status; the one that served lasts to the end, and
                                       its context goes upstream as `traceparent`
    GET /stream/{stream_id}   SERVER   a reconnection to a resumable stream, linked to the
                                       request that started it (and that span to it)
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request

from gateway import __version__
from gateway.auth import key_of
from gateway.errors import GatewayError
from gateway.observability import request_id_of
from gateway.parts import Reasoning, Text, assemble, text_of
from gateway.providers._http import TRACE_HEADERS
from gateway.providers.base import Batch, ChatRequest, Delta
from gateway.settings import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from gateway.models import Attempt
    from gateway.relay import Relay
    from gateway.spend import Spend

__all__ = ["RequestTrace", "Tracing", "build_tracing", "tracing_enabled"]

log = logging.getLogger("gateway.tracing")
SERVICE_NAME = "llm-token-relay"
# gen_ai.provider.name as the conventions name each vendor; the fake provider is the gateway's.
GENAI_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
    "fake": "llm-token-relay.fake",
}
ERROR_OUTCOMES = frozenset({"timeout", "upstream_error", "shutdown"})


def tracing_enabled(config: TracingConfig, environ: Mapping[str, str] = os.environ) -> bool:
    """On when `[tracing].endpoint` is set, or the OTEL_* variables ask for OTLP export."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if config.endpoint:
        return True
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "otlp":
        return True
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return bool(endpoint) and exporter in ("", "otlp")


def build_tracing(config: TracingConfig, environ: Mapping[str, str] = os.environ) -> Tracing | None:
    """The app's tracer (SDK, BatchSpanProcessor, OTLP/HTTP exporter), or None when off.

    The SDK is imported here, only when tracing is on."""
    if not tracing_enabled(config, environ):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    attributes = {"service.version": __version__}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = SERVICE_NAME
    sampler = None  # the SDK's own: OTEL_TRACES_SAMPLER, else parent-based always-on
    if config.sample_ratio is not None:
        sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    endpoint = None  # the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT itself
    if config.endpoint:
        endpoint = config.endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    log.info("tracing: OTLP/HTTP export to %s", endpoint or "the OTEL_* endpoint")
    return Tracing(provider, config.capture_content)


class Tracing:
    def __init__(self, provider: TracerProvider, capture_content: bool) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.api = trace
        self.propagator = TraceContextTextMapPropagator()
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("gateway", __version__)
        self.capture_content = capture_content

    def request(self, request: Request, requested_model: str) -> RequestTrace:
        """The SERVER span of a model request, continuing the client's trace context."""
        parent = self.propagator.extract(request.headers)
        route = _route(request)
        span = self.tracer.start_span(
            f"{request.method} {route}",
            context=parent,
            kind=self.api.SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": requested_model,
                "http.request.method": request.method,
                "http.route": route,
                "url.path": request.url.path,
                "gateway.request_id": _request_id(request),
                **_key_attribute(request),
            },
        )
        return RequestTrace(self, span)

    def reconnection(self, request: Request, origin: RequestTrace | None) -> Span:
        """A reconnection's SERVER span, linked both ways to the request that started the
        stream (when that request's span lives on this replica)."""
        links = [self.api.Link(origin.span.get_span_context())] if origin is not None else None
        route = _route(request)
        span = self.tracer.start_span(
            f"{request.method} {route}",
            context=self.propagator.extract(request.headers),
            kind=self.api.SpanKind.SERVER,
            links=links,
            attributes={
                "gen_ai.operation.name": "chat",
                "http.request.method": request.method,
                "http.route": route,
                "gateway.request_id": _request_id(request),
                "gateway.resumed": True,
                **_key_attribute(request),
            },
        )
        if origin is not None and origin.span.is_recording():  # still running
            origin.span.add_link(span.get_span_context(), {"gateway.link": "reconnection"})
        return span

    @staticmethod
    def reconnection_ended(span: Span, outcome: str, deltas: int, replayed: int) -> None:
        span.set_attribute("gateway.outcome", outcome)
        span.set_attribute("gateway.deltas", deltas)
        span.set_attribute("gateway.replayed", replayed)
        if outcome in ERROR_OUTCOMES:
            _fail(span, outcome, outcome)
        span.end()

    def force_flush(self) -> bool:
        return self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()


class RequestTrace:
    """One request's spans: the SERVER span, and the attempt under way (or that served)."""

    __slots__ = ("attempt_span", "output", "span", "tracing")

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self.tracing = tracing
        self.span = span
        self.attempt_span: Span | None = None
        self.output: list[Delta] | None = None  # the answer, with capture_content

    def attempt(self, attempt: Attempt, request: ChatRequest | None, retry: int) -> None:
        """A CLIENT span for the attempt; its context goes upstream as `traceparent`. On the
        native path there is no normalised request (the client's body goes up as sent): the
        span then has no request parameters and no captured input."""
        provider = attempt.provider
        kind = getattr(provider.config, "type", "")
        vendor = GENAI_PROVIDERS.get(kind, kind)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": vendor,
            "gen_ai.system": vendor,  # the conventions' older name, still read by backends
            "gen_ai.request.model": attempt.upstream_model,
            "gateway.provider": provider.name,
            "gateway.deployment": attempt.served_by,  # the deployment (SPEC §5.3), or provider
            "gateway.model": attempt.model,
            "gateway.retry": retry,
        }
        if request is not None and request.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_tokens
        if request is not None and request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if request is not None and self.tracing.capture_content:
            attributes["gen_ai.input.messages"] = _input_messages(request)
            if request.system:
                attributes["gen_ai.system_instructions"] = _text_parts(request.system)
        tracing = self.tracing
        span = tracing.tracer.start_span(
            f"chat {attempt.upstream_model}",
            context=tracing.api.set_span_in_context(self.span),
            kind=tracing.api.SpanKind.CLIENT,
            attributes=attributes,
        )
        self.attempt_span = span
        carrier: dict[str, str] = {}
        tracing.propagator.inject(carrier, context=tracing.api.set_span_in_context(span))
        TRACE_HEADERS.set(carrier or None)

    def attempt_failed(self, error: GatewayError) -> None:
        span, self.attempt_span = self.attempt_span, None
        if span is not None:
            _fail(span, error.type, error.message)
            span.end()

    def committed(self, relay: Relay) -> None:
        """The first delta is in hand: the first-token event, and where it came from."""
        self.span.add_event("gen_ai.first_token", {"gateway.deltas": len(relay.first)})
        self.span.set_attribute("gateway.model", relay.model)
        self.span.set_attribute("gateway.provider", relay.provider)
        if self.tracing.capture_content:
            self.output = list(relay.first)
            relay.rest = _captured(relay.rest, self.output)

    def ended(
        self,
        relay: Relay,
        outcome: str,
        error: GatewayError | None,
        spend: Spend | None,
        status: int | None,
    ) -> None:
        """The stream ended, whatever ended it: the response's attributes, then both spans."""
        result = relay.outcome
        attributes: dict[str, Any] = {
            "gen_ai.response.model": result.model or relay.attempt.upstream_model,
            "gateway.outcome": outcome,
        }
        if result.finish_reason is not None:
            attributes["gen_ai.response.finish_reasons"] = [result.finish_reason]
        usage = result.usage
        if usage is not None:
            if usage.prompt_tokens is not None:
                attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            if usage.completion_tokens is not None:
                attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        if spend is not None:
            attributes["gateway.spend"] = spend.cost
            attributes["gateway.spend_estimated"] = spend.estimated
        if self.output is not None:
            answer = {"role": "assistant", "parts": _output_parts(self.output)}
            attributes["gen_ai.output.messages"] = orjson.dumps([answer]).decode()
        attempt_span, self.attempt_span = self.attempt_span, None
        for span in (attempt_span, self.span):
            if span is None:
                continue
            span.set_attributes(attributes)
            if error is not None:
                _fail(span, error.type, error.message)
            elif outcome in ERROR_OUTCOMES:
                _fail(span, outcome, outcome)
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
        if attempt_span is not None:
            attempt_span.end()
        self.span.end()

    def refused(self, error: BaseException) -> None:
        """The request ended before its first delta (refused, every attempt failed, client
        gone): the error on the SERVER span (and on an attempt span still open)."""
        kind = error.type if isinstance(error, GatewayError) else type(error).__name__
        message = error.message if isinstance(error, GatewayError) else kind
        attempt_span, self.attempt_span = self.attempt_span, None
        for span in (attempt_span, self.span):
            if span is None:
                continue
            if kind == "client_disconnect":  # the client's choice, not a failure
                span.set_attribute("gateway.outcome", kind)
            else:
                _fail(span, kind, message)
        if isinstance(error, GatewayError):
            self.span.set_attribute("http.response.status_code", error.status)
        if attempt_span is not None:
            attempt_span.end()
        self.span.end()


def _fail(span: Span, kind: str, message: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"))


async def _captured(rest: AsyncIterator[Batch], into: list[Delta]) -> AsyncGenerator[Batch, None]:
    """The rest of the stream, its text kept for the span (capture_content only)."""
    try:
        async for batch in rest:
            into += batch
            yield batch
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


def _output_parts(output: list[Delta]) -> list[dict[str, Any]]:
    """The answer in the GenAI conventions' message parts: text, reasoning, tool calls."""
    parts: list[dict[str, Any]] = []
    for block in assemble(output):
        if isinstance(block, Text):
            parts.append({"type": "text", "content": block.text})
        elif isinstance(block, Reasoning):
            parts.append({"type": "reasoning", "content": block.text})
        else:
            call = {"type": "tool_call", "id": block.id, "name": block.name}
            try:
                call["arguments"] = orjson.loads(block.arguments) if block.arguments else {}
            except orjson.JSONDecodeError:
                call["arguments"] = block.arguments
            parts.append(call)
    return parts or [{"type": "text", "content": ""}]


def _parts(text: str) -> list[dict[str, str]]:
    return [{"type": "text", "content": text}]


def _text_parts(text: str) -> str:
    return orjson.dumps(_parts(text)).decode()


def _input_messages(request: ChatRequest) -> str:
    messages = [
        {"role": message.role, "parts": _parts(text_of(message.content))}
        for message in request.messages
    ]
    return orjson.dumps(messages).decode()


def _route(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else request.url.path


def _request_id(request: Request) -> str:
    return request_id_of(request.scope)


def _key_attribute(request: Request) -> dict[str, str]:
    key = key_of(request)
    return {"gateway.key": key.name} if key is not None else {}
