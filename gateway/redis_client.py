"""The one Redis client a process shares between the limits and the resumable-stream log.

Every call made through it is bounded by its caller with `asyncio.timeout` (the limits with
`redis_timeout_s`; a reader's blocking `XREAD` with its block time plus that), so the client
itself has no read time-out, which would cut a blocking read short. Nothing is retried: a
failure is the caller's to handle (SPEC §7). With `redis_cluster = true`, `redis_url` names one
node of a Redis Cluster and the client follows the cluster's slots; every key the gateway uses
for one stream or one limit carries the same hash tag, so scripts and pipelines stay on one node.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["connect"]


def connect(url: str, timeout_s: float, cluster: bool = False) -> Any:
    """A lazily connecting client (Redis may be down at start-up: the gateway still starts)."""
    options: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return Redis.from_url(url, retry_on_timeout=False, health_check_interval=0, **options)
