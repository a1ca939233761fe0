"""Logging set-up (text or JSON lines)."""

from __future__ import annotations

import logging

from gateway.settings import Settings

__all__ = ["configure_logging"]


class _DropExpectedTruncation(logging.Filter):
    # A text stream that fails after the commit point is ended on purpose without its last
    # chunk; uvicorn reports that as an error, but the gateway's own line already says why.
    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("uvicorn.error").addFilter(_DropExpectedTruncation())
    logging.getLogger("httpx").setLevel(logging.WARNING)
