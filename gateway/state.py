"""The running gateway's state, built in the lifespan and reached through the app."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from gateway.lifecycle import Drain
from gateway.models import ModelTable
from gateway.providers import RegisteredProvider
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.responses import RelayResponse

__all__ = ["GatewayState", "state_of"]

log = logging.getLogger("gateway")


@dataclass(slots=True)
class GatewayState:
    settings: Settings
    providers: Mapping[str, RegisteredProvider]
    models: ModelTable
    drain: Drain = field(default_factory=Drain)

    def finished(self, response: RelayResponse) -> None:
        """Called once per stream, whatever ended it."""
        encoder = response.encoder
        log.info(
            "stream %s model=%s provider=%s result=%s deltas=%d",
            encoder.stream_id,
            encoder.relay.model,
            encoder.relay.provider,
            response.result,
            encoder.deltas,
        )


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state
