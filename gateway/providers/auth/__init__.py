"""Vendor authentication, a seam of the upstream client (SPEC §5.2).

An HTTP adapter hands its `RequestAuth` to `UpstreamClient.post_json`, which asks it for the
headers of each request once the body is serialised: a static key header, a bearer token, or
a SigV4 signature over the method, URL and body. Building those headers does no I/O: tokens and
temporary credentials are fetched by `Refreshing`, once at start-up and then in the background
before they expire, in a worker thread (the vendors' libraries are synchronous), never on a
request's path. When no valid credential is in hand, the request fails at once with 502
`upstream_auth`, saying why the last fetch failed.

Credentials, tokens and signatures are never logged: failures are logged by exception type and
a sanitised message, and the vendors' libraries' own loggers (which log signatures at debug)
are kept at warning by `gateway.observability.configure_logging`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

import httpx

from gateway.errors import UpstreamAuth
from gateway.redaction import KEY_SHAPED

__all__ = ["FreshTokens", "KeyHeader", "Refreshing", "RequestAuth", "Token", "refresh_delay"]

log = logging.getLogger("gateway.upstream.auth")

# A token is renewed when this much of its life is left (at most), or at half its life for
# short-lived ones: well before it expires, so a failed renewal has time to be retried.
RENEW_MARGIN_S = 300.0
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
# A credential the upstream refused (revoked, rotated) is renewed at once, but at most this
# often: a refusal that renewal cannot cure (missing permissions) must not hammer the issuer.
FORCED_EVERY_S = 30.0
# How long start-up waits for the first credentials before serving without them (the
# background task keeps trying; requests meanwhile get 502 upstream_auth).
FIRST_FETCH_S = 20.0


class RequestAuth(Protocol):
    def headers(self, method: str, url: httpx.URL, body: bytes) -> dict[str, str]:
        """The headers that authenticate one request (no I/O; raises `UpstreamAuth`)."""
        ...

    def refused(self) -> None:
        """The upstream refused a request (401/403): renew the credential soon, off-path."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class KeyHeader:
    """One header with the provider's API key: nothing to refresh. The key is looked up per
    request (a missing key is that request's 502 `upstream_auth`, not a failed start-up)."""

    def __init__(self, name: str, key: Callable[[], str]) -> None:
        self._name = name
        self._key = key

    def headers(self, method: str, url: httpx.URL, body: bytes) -> dict[str, str]:
        return {self._name: self._key()}

    def refused(self) -> None:
        return None  # a key is what it is: nothing to renew

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Token:
    """A credential in hand and when it expires (epoch seconds; None: it does not)."""

    __slots__ = ("expires_at", "fetched_at", "value")

    def __init__(self, value: object, expires_at: float | None) -> None:
        self.value = value
        self.expires_at = expires_at
        self.fetched_at = time.time()


def refresh_delay(token: Token) -> float | None:
    """Seconds until `token` should be renewed; None when it never expires."""
    if token.expires_at is None:
        return None
    lifetime = max(0.0, token.expires_at - token.fetched_at)
    margin = min(RENEW_MARGIN_S, lifetime / 2)
    return max(RETRY_MIN_S, token.expires_at - margin - time.time())


def describe(exc: BaseException) -> str:
    """Why a fetch failed, safe to log and to show: the exception's type and first line."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = KEY_SHAPED.sub("[redacted]", text)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Refreshing:
    """Credentials fetched by a blocking `fetch` in a thread, at start-up and in the background
    before they expire; `current()` is what requests use, without waiting for anything.

    A failed renewal is retried with backoff while the old credential is still valid; once it
    has expired, `current()` raises `UpstreamAuth` with the reason.
    """

    def __init__(self, what: str, fetch: Callable[[], Token]) -> None:
        self._what = what  # "Google access token", for messages
        self._fetch = fetch
        self._token: Token | None = None
        self._error = "not fetched yet"
        self._task: asyncio.Task[None] | None = None
        self._fetched = asyncio.Event()
        self.renewed = asyncio.Event()  # set at each fetch that succeeds (tests observe it)
        self._wake = asyncio.Event()  # set by `renew()`: fetch now, not at the scheduled time
        self._forced_at = 0.0

    async def start(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"refresh {self._what}")
        try:
            async with asyncio.timeout(FIRST_FETCH_S):
                await self._fetched.wait()
        except TimeoutError:
            log.warning("no %s after %.0f s; still trying", self._what, FIRST_FETCH_S)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def renew(self) -> None:
        """Fetch again now, in the background (the upstream refused the credential in hand)."""
        now = time.monotonic()
        if self._task is not None and now - self._forced_at >= FORCED_EVERY_S:
            self._forced_at = now
            self._wake.set()

    def current(self) -> object:
        token = self._token
        if token is None:
            raise UpstreamAuth(f"no {self._what} ({self._error})")
        if token.expires_at is not None and token.expires_at <= time.time():
            raise UpstreamAuth(f"the {self._what} expired and could not be renewed ({self._error})")
        return token.value

    async def _run(self) -> None:
        retry = RETRY_MIN_S
        while True:
            try:
                token = await asyncio.to_thread(self._fetch)
            except Exception as exc:  # any library's failure: logged, retried, never raised
                self._error = describe(exc)
                log.warning("could not get a %s: %s", self._what, self._error)
                self._fetched.set()
                delay = retry
                retry = min(RETRY_MAX_S, retry * 2)
            else:
                self._token, self._error = token, "no error"
                self.renewed.set()
                self._fetched.set()
                retry = RETRY_MIN_S
                delay_or_none = refresh_delay(token)
                # One that never expires is fetched again only when the upstream refuses it.
                delay = 365 * 86400.0 if delay_or_none is None else delay_or_none
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()


class FreshTokens:
    """A `RequestAuth` whose credentials a `Refreshing` keeps fresh: a subclass names what it
    fetches (`what`) and fetches it (`_fetch`, blocking, in a worker thread). By default the
    token's value is the headers to send (`Authorization: Bearer …`)."""

    what = "credentials"

    def __init__(self) -> None:
        self.tokens = Refreshing(self.what, self._fetch)

    def _fetch(self) -> Token:
        raise NotImplementedError

    def headers(self, method: str, url: httpx.URL, body: bytes) -> dict[str, str]:
        value = self.tokens.current()
        assert isinstance(value, dict)
        return value

    def refused(self) -> None:
        self.tokens.renew()

    async def start(self) -> None:
        await self.tokens.start()

    async def aclose(self) -> None:
        await self.tokens.aclose()
