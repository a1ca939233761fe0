"""Request records, the one-line-per-request log, log formats and redaction.

Every HTTP request gets a `RequestRecord` in its ASGI scope, filled in as the request goes
(the relay routes fill it themselves, so their chunks pass through with no wrapper), and at its
end one log line and the request metrics. Redaction runs on the final text of every log line
(message, fields and tracebacks alike), so no logger, ours or a library's, can print a key.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import Scope

from gateway import ids
from gateway.metrics import Metrics
from gateway.providers.base import Usage
from gateway.redaction import KEY_PREFIXES, KEY_SHAPED

__all__ = [
    "RECORD_KEY",
    "RequestRecord",
    "configure_logging",
    "finish",
    "outcome_of",
    "record_of",
    "request_id_of",
]

log = logging.getLogger("gateway.access")
RECORD_KEY = "gateway.record"
REQUEST_ID_KEY = "gateway.request_id"
RELAY_ROUTES = frozenset(
    {"/stream", "/v1/chat/completions", "/v1/messages", "/ui/chat", "/ui/completion"}
)
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    route: str
    method: str
    started: float
    status: int | None = None
    model: str | None = None
    provider: str | None = None
    outcome: str = "complete"
    error_type: str | None = None
    time_to_first_delta_ms: float | None = None
    duration_ms: float | None = None
    deltas: int = 0
    bytes_out: int = 0
    usage: dict[str, int | None] | None = None
    key: str | None = None
    requested_model: str | None = None  # logged when the name was refused (404/403)
    spend: float | None = None  # what the stream cost (priced models only, SPEC §7)
    spend_estimated: bool | None = None  # true: some usage was not reported, but estimated

    def set_usage(self, usage: Usage | None) -> None:
        self.usage = usage.as_dict() if usage is not None else None

    def logged(self) -> dict[str, Any]:
        """The fields of its log line. (`dataclasses.asdict` deep-copies every field: it was
        half of the access line's cost, docs/PERFORMANCE.md.)"""
        return {name: getattr(self, name) for name in _LOGGED}


_LOGGED = tuple(field.name for field in fields(RequestRecord) if field.name != "started")


def record_of(scope: Scope) -> RequestRecord | None:
    record: RequestRecord | None = scope.get(RECORD_KEY)
    return record


def outcome_of(error_type: str) -> str:
    """The log/metric outcome for an error type."""
    if error_type == "upstream_timeout":
        return "timeout"
    if error_type.startswith("upstream_"):
        return "upstream_error"
    if error_type == "unavailable":
        return "shutdown"
    if error_type == "client_disconnect":
        return "client_disconnect"
    return "rejected"


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-ID if it is sane, else a new one; the same for the request."""
    found: str | None = scope.get(REQUEST_ID_KEY)
    if found is None:
        found = scope[REQUEST_ID_KEY] = _new_request_id(scope)
    return found


def _new_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            sent = str(value.decode("latin-1"))
            if _SANE_REQUEST_ID.fullmatch(sent):
                return sent
            break
    return ids.token_hex(16)


def finish(metrics: Metrics, record: RequestRecord) -> None:
    """A request is over: its metrics, and its log line."""
    record.duration_ms = round((time.perf_counter() - record.started) * 1000, 3)
    if record.route in RELAY_ROUTES:
        labels = (
            record.route,
            record.model or "",
            record.provider or "",
            record.outcome,
            record.error_type or "",
        )
        metrics.request_counter(labels).inc()
    if log.isEnabledFor(logging.INFO):
        log.info("request", extra={"fields": record.logged()})


# ---- log formats and redaction ---------------------------------------------------------------

_REDACTIONS = [
    # header-like pairs: authorization: Bearer x, x-api-key=x, "x-goog-api-key": "x", api_key=x
    re.compile(
        r"(?i)\b(authorization|proxy-authorization|x-api-key|x-goog-api-key|api[-_]?key)"
        r"(\W{1,4})(?:bearer\s+|basic\s+)?[^\s\"',;&)}]+"
    ),
    # keys in URLs: ?key=…, &api_key=…, &token=…
    re.compile(r"(?i)([?&](?:key|api[-_]?key|apikey|token|access_token|secret)=)[^&\s\"']+"),
]


class Redactor:
    def __init__(self, secrets_: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets_ if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        # Each pattern runs only on text holding what every match of it must contain (the
        # checks are plain substring tests, a fraction of a regex scan): a typical access line
        # needs none of the three, which cost about 30 us a line.
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        lowered = text.lower()
        if (
            "authorization" in lowered
            or "apikey" in lowered
            or "api-key" in lowered
            or "api_key" in lowered
        ):
            text = _REDACTIONS[0].sub(r"\1\2[redacted]", text)
        if "=" in text and ("?" in text or "&" in text):
            text = _REDACTIONS[1].sub(r"\1[redacted]", text)
        if any(prefix in text for prefix in KEY_PREFIXES):
            text = KEY_SHAPED.sub("[redacted]", text)
        return text


class _Formatter(logging.Formatter):
    def __init__(self, json_lines: bool, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.json_lines = json_lines
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        if self.json_lines:
            data: dict[str, Any] = {
                "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
                **fields,
            }
            if record.exc_info:
                data["exception"] = self.formatException(record.exc_info)
            text = orjson.dumps(data, default=str).decode()
        else:
            text = super().format(record)
            if fields:
                text += " " + " ".join(
                    f"{k}={_json(v) if isinstance(v, dict | list) else v}"
                    for k, v in fields.items()
                    if v is not None
                )
        return self.redact(text)


def _json(value: Any) -> str:
    """Dicts and lists in the text format: as JSON, not Python reprs."""
    return orjson.dumps(value).decode()


class _DropExpectedTruncation(logging.Filter):
    # A text stream that fails after the commit point is ended on purpose without its last
    # chunk; uvicorn reports that as an error, but the gateway's own line already says why.
    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (as logging's last-resort handler does)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


VENDOR_LOGGERS = ("botocore", "google.auth", "azure", "msal", "urllib3")


def configure_logging(level: str, log_format: str, secrets_: Iterable[str] = ()) -> None:
    """One handler on the root logger: every library's lines get the format and redaction."""
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(log_format == "json", Redactor(secrets_)))
    handler.addFilter(_DropExpectedTruncation())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Fields no format of the gateway's shows, gathered for every record by default (the
    # logging HOWTO's "Optimization"): the caller's file and line walk the stack per line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The cloud vendors' libraries log signatures, canonical requests and token exchanges at
    # debug: never in the gateway's logs, whatever its level.
    for name in VENDOR_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
