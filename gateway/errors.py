"""The gateway's typed errors: every failure a client can see is one of these.

    GatewayError                      status  type
    ├── InvalidRequest                   422  invalid_request
    ├── BadRequest                       400  invalid_request
    ├── RequestTooLarge                  413  request_too_large
    ├── UnknownModel                     404  unknown_model
    ├── ModelUnavailable                 404  model_unavailable      (its provider has no key)
    ├── Unauthorized                     401  unauthorized
    ├── ModelNotAllowed                  403  model_not_allowed
    ├── RateLimited                      429  rate_limited           (+ Retry-After)
    ├── BudgetExceeded                   429  budget_exceeded        (+ Retry-After)
    ├── Unavailable                      503  unavailable
    ├── NotFound                         404  not_found              (no such route or stream)
    ├── MethodNotAllowed                 405  method_not_allowed
    └── UpstreamError
        ├── UpstreamRejected             400  upstream_rejected
        ├── UpstreamAuth                 502  upstream_auth
        ├── UpstreamRateLimited          429  upstream_rate_limited  (+ Retry-After)
        ├── UpstreamUnavailable          502  upstream_unavailable
        │   └── UpstreamOverloaded       502  upstream_unavailable   (503/529: Anthropic's 529)
        ├── UpstreamProtocolError        502  upstream_protocol
        └── UpstreamTimeout              504  upstream_timeout

Adapters raise only `UpstreamError` subclasses. Whether an error becomes an HTTP status (before
the commit point) or an in-band error frame (after it) is decided by the relay and the
response encoders, never by the adapter. `retryable` marks the errors after which the next
fallback is tried (SPEC §6: connect errors, time-outs, 429, 5xx, 529).
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "BudgetExceeded",
    "GatewayError",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelError",
    "ModelNotAllowed",
    "ModelUnavailable",
    "NotFound",
    "RateLimited",
    "RequestTooLarge",
    "Unauthorized",
    "Unavailable",
    "UnknownModel",
    "UpstreamAuth",
    "UpstreamError",
    "UpstreamOverloaded",
    "UpstreamProtocolError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "error_for_status",
]


class GatewayError(Exception):
    status: int = 500
    type: str = "internal_error"
    retryable: bool = False
    # OpenAI's envelope names the field at fault and a finer code when the API has one
    # (`previous_response_not_found`); the other dialects ignore them.
    param: str | None = None
    code: str | None = None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(0, round(self.retry_after)))}


class InvalidRequest(GatewayError):
    status, type = 422, "invalid_request"


class BadRequest(GatewayError):
    status, type = 400, "invalid_request"


class RequestTooLarge(GatewayError):
    status, type = 413, "request_too_large"


class ModelError(GatewayError):
    """A refusal about the model the client named, which the request's log line records."""

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model


class UnknownModel(ModelError):
    status, type = 404, "unknown_model"


class ModelUnavailable(ModelError):
    """A configured model that cannot be served: its provider's key variable is unset.

    A permanent configuration error, so a 4xx that the SDKs do not retry (they retry 408,
    409, 429 and 5xx); 404 as OpenAI answers for a model that exists but is not yours.
    """

    status, type = 404, "model_unavailable"


class Unavailable(GatewayError):
    status, type = 503, "unavailable"


class Unauthorized(GatewayError):
    status, type = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class ModelNotAllowed(ModelError):
    status, type = 403, "model_not_allowed"


class RateLimited(GatewayError):
    status, type = 429, "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float, extra_headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.extra_headers = extra_headers or {}

    def headers(self) -> dict[str, str]:
        return {**super().headers(), **self.extra_headers}


class BudgetExceeded(GatewayError):
    """A key's spend reached its budget for the period; Retry-After: until the period resets."""

    status, type = 429, "budget_exceeded"


class NotFound(GatewayError):
    status, type = 404, "not_found"


class MethodNotAllowed(GatewayError):
    status, type = 405, "method_not_allowed"


class UpstreamError(GatewayError):
    status, type = 502, "upstream_unavailable"


class UpstreamRejected(UpstreamError):
    status, type = 400, "upstream_rejected"


class UpstreamAuth(UpstreamError):
    status, type = 502, "upstream_auth"


class UpstreamRateLimited(UpstreamError):
    status, type, retryable = 429, "upstream_rate_limited", True


class UpstreamUnavailable(UpstreamError):
    status, type, retryable = 502, "upstream_unavailable", True


class UpstreamOverloaded(UpstreamUnavailable):
    """The upstream said it is overloaded (503, 529, an `overloaded_error` event).

    The same 502 `upstream_unavailable` as any unavailable upstream on the gateway's own
    routes; the Anthropic dialect answers its clients' 529 `overloaded_error` instead.
    """


class UpstreamProtocolError(UpstreamError):
    # An upstream that answers with something other than its stream is broken, not the
    # request: the next fallback may well work.
    status, type, retryable = 502, "upstream_protocol", True


class UpstreamTimeout(UpstreamError):
    status, type, retryable = 504, "upstream_timeout", True


def error_for_status(
    status: int, message: str, *, retry_after: float | None = None
) -> UpstreamError:
    """Map an upstream HTTP status to the gateway's error (SPEC §4.2)."""
    if status == 429:
        return UpstreamRateLimited(message, retry_after=retry_after)
    if status in (401, 403):
        return UpstreamAuth(message)
    if status == 408:
        return UpstreamTimeout(message)
    if status in (503, 529):
        return UpstreamOverloaded(message, retry_after=retry_after)
    if status == 424:  # Failed Dependency: the model behind the endpoint failed (Bedrock)
        return UpstreamUnavailable(message)
    if 400 <= status < 500:
        return UpstreamRejected(message)
    return UpstreamUnavailable(message)
