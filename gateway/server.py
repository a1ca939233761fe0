"""Running the app under uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from gateway.app import create_app, settle_heap
from gateway.http_protocol import HeadWithFirstChunk
from gateway.lifecycle import BACKSTOP_S
from gateway.settings import Settings

__all__ = ["serve", "stop_budget_s", "uvicorn_config"]

# uvicorn's shutdown starts only once the drain is over (the gateway keeps listening while it
# drains): by then every stream has ended, so its own graceful time-out is only a margin for
# the last bytes and the idle keep-alive connections. The whole stop takes at most
# shutdown_grace_s + BACKSTOP_S + SHUTDOWN_MARGIN_S.
SHUTDOWN_MARGIN_S = 2


def stop_budget_s(settings: Settings) -> float:
    """The longest a SIGTERM'd gateway takes to exit: what an orchestrator must wait."""
    return settings.shutdown_grace_s + BACKSTOP_S + SHUTDOWN_MARGIN_S


def uvicorn_config(settings: Settings, app: Any, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # replaced by the gateway's own line: uvicorn's prints query strings
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_MARGIN_S,
        backlog=4096,  # bursts of new streams; the kernel caps it at net.core.somaxconn
        log_config=None,
        http=HeadWithFirstChunk,  # uvicorn's httptools protocol, the head sent with the body
        **extra,
    )


def serve(settings: Settings, config_path: str | None) -> None:
    """Serve until a signal: in this process, or with `workers` processes sharing a socket."""
    if settings.workers == 1:
        app = create_app(settings)
        settle_heap()
        uvicorn.Server(uvicorn_config(settings, app)).run()
        return
    # Each worker builds its own app from the same layers: pass the CLI's choices on, and
    # give prometheus-client a directory where every worker's metrics meet.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="gateway-metrics-"))
    if config_path:
        os.environ["GATEWAY_CONFIG"] = config_path
    for key in ("host", "port", "log_level", "log_format"):
        os.environ[f"GATEWAY_{key.upper()}"] = str(getattr(settings, key))
    config = uvicorn_config(
        settings, "gateway.app:create_app_from_env", factory=True, workers=settings.workers
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()
