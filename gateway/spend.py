"""Spend (SPEC §7): what a served attempt cost, from the usage it reported and its price, and
the UTC periods that budgets count in.

A cost is `input * input price + cached input * cached price + output * output price`, per
million tokens. Usage the upstream did not report is estimated (the prompt's characters / 4 for
input, one token per relayed delta for output, as for `tpm`), and the spend says so. Budgets
add spends up in whole nano-units (integers), so that replicas adding in any order through
Redis agree to the last digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gateway.providers.base import ChatRequest, Usage
from gateway.settings import PriceConfig

if TYPE_CHECKING:
    from gateway.models import Attempt

__all__ = ["NANO", "Price", "Spend", "period_of", "price_of", "spend_of"]

NANO = 1_000_000_000  # budget arithmetic: integer nano-units of the prices' currency
PER = 1_000_000  # prices are per million tokens
CHARS_PER_TOKEN = 4  # the usual estimate for English text


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float

    @classmethod
    def of(cls, config: PriceConfig | None) -> Price | None:
        if config is None:
            return None
        cached = config.cached_input_per_mtok
        return cls(
            config.input_per_mtok,
            config.output_per_mtok,
            config.input_per_mtok if cached is None else cached,
        )


@dataclass(frozen=True, slots=True)
class Spend:
    cost: float
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    estimated: bool  # some usage was not reported by the upstream

    @property
    def nano(self) -> int:
        return round(self.cost * NANO)


def price_of(attempt: Attempt) -> Price | None:
    """The price of what served `attempt`: the one place a price is looked up, so that a more
    specific source (a deployment's own price) has one place to go."""
    return attempt.price


def spend_of(
    attempt: Attempt, usage: Usage | None, request: ChatRequest | None, deltas: int
) -> Spend | None:
    """The attempt's cost (None when it has no price)."""
    price = price_of(attempt)
    if price is None:
        return None
    reported = usage or Usage()
    estimated = reported.prompt_tokens is None or reported.completion_tokens is None
    input_tokens = reported.prompt_tokens
    if input_tokens is None:
        input_tokens = estimate_input(request)
    output_tokens = reported.completion_tokens
    if output_tokens is None:
        output_tokens = deltas
    cached = min(reported.cached_tokens or 0, input_tokens)
    cost = (
        (input_tokens - cached) * price.input_per_mtok
        + cached * price.cached_input_per_mtok
        + output_tokens * price.output_per_mtok
    ) / PER
    return Spend(cost, input_tokens, output_tokens, cached, estimated)


def estimate_input(request: ChatRequest | None) -> int:
    if request is None:
        return 0
    chars = sum(len(message.content) for message in request.messages)
    chars += len(request.system or "")
    return math.ceil(chars / CHARS_PER_TOKEN)


def period_of(now: float, period: str) -> tuple[str, float]:
    """The UTC budget period `now` falls in ("day" or "month"), and the seconds left in it."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        end, name = start + timedelta(days=1), start.strftime("%Y-%m-%d")
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        name = start.strftime("%Y-%m")
    return name, (end - moment).total_seconds()
