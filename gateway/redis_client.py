"""The one Redis client a process shares between the limits and the resumable-stream log.

Every call made through it is bounded by its caller with `asyncio.timeout` (the limits with
`redis_timeout_s`; a reader's blocking `XREAD` with its block time plus that), so the client
itself has no read time-out, which would cut a blocking read short. Nothing is retried: a
failure is the caller's to handle (SPEC §7). With `redis_cluster = true`, `redis_url` names one
node of a Redis Cluster and the client follows the cluster's slots; every key the gateway uses
for one stream or one limit carries the same hash tag, so scripts and pipelines stay on one node.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

__all__ = ["Outage", "connect"]


def connect(url: str, timeout_s: float, cluster: bool = False) -> Any:
    """A lazily connecting client (Redis may be down at start-up: the gateway still starts).

    redis-py is imported here, when `redis_url` is set: imported, it is ~20 MiB of a gateway's
    RSS at rest, which a gateway without Redis does not need."""
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return Redis.from_url(url, retry_on_timeout=False, health_check_interval=0, **options)


class Outage:
    """A shared store's failures: each one counted, and logged once a minute at most (SPEC
    §7: in an outage every call in flight fails at once, and one line says so). The line names
    the exception's type only: its text may name the host, or a password in the URL."""

    def __init__(
        self,
        log: logging.Logger,
        counter: Counter | None,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 60.0,
    ) -> None:
        self.log = log
        self.counter = counter
        self.clock = clock
        self.every_s = every_s
        self._logged = -math.inf

    def failed(self, exc: BaseException, message: str, *args: object) -> None:
        """Count it; log `message` % (the exception's type, *args) unless logged lately."""
        if self.counter is not None:
            self.counter.inc()
        now = self.clock()
        if now - self._logged >= self.every_s:
            self._logged = now
            self.log.warning(message, type(exc).__name__, *args)
