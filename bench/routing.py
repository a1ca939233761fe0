"""The routing decision's cost per request (SPEC §5.3): `ModelTable.resolve` for a one-provider
entry (the plan built once at start-up) and for entries of three deployments under each
strategy, sticky or not, some cooling down. Pure CPU in this process: no upstream, no Redis
(routing reads the cooldowns' in-process view; Redis is read by a background refresh).

    python -m bench.routing [--rounds 7] [--calls 20000]

Prints the median of the rounds in microseconds per decision.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.balancer import Balancer
from gateway.cooldowns import Cooldowns
from gateway.metrics import Metrics
from gateway.models import ModelTable
from gateway.providers import RegisteredProvider
from gateway.settings import load_settings

CONFIG = """
[providers.a]
type = 'fake'
[providers.b]
type = 'fake'
[providers.c]
type = 'fake'

[models.one]
provider = 'a'
fallbacks = ['story']

[models.weighted]
deployments = [{provider = 'a', weight = 3}, {provider = 'b'}, {provider = 'c', weight = 0}]
fallbacks = ['story']

[models.least-busy]
routing = 'least-busy'
deployments = [{provider = 'a'}, {provider = 'b'}, {provider = 'c'}]

[models.latency]
routing = 'latency'
deployments = [{provider = 'a'}, {provider = 'b'}, {provider = 'c'}]
"""


def build() -> ModelTable:
    path = Path(tempfile.mkdtemp()) / "routing.toml"
    path.write_text(CONFIG)
    settings = load_settings(path)
    providers = {
        name: RegisteredProvider(name, config, None)  # type: ignore[arg-type]  # never called
        for name, config in settings.providers.items()
    }
    balancer = Balancer(Cooldowns(time.time), random.Random(1))
    table = ModelTable(settings, providers, balancer, Metrics())
    for attempt in table.resolve("latency"):
        balancer.primed(attempt, 0.2)
    return table


def cases(table: ModelTable) -> dict[str, Callable[[], Any]]:
    cooling = {"weighted/a": time.time() + 3600}
    cooldowns = table.balancer.cooldowns

    def with_one_cooling() -> Any:
        cooldowns.until = cooling
        return table.resolve("weighted")

    return {
        "one provider (plan built at start-up)": lambda: table.resolve("one"),
        "3 deployments, weighted": lambda: table.resolve("weighted"),
        "3 deployments, weighted, sticky": lambda: table.resolve("weighted", "conversation-1"),
        "3 deployments, least-busy": lambda: table.resolve("least-busy"),
        "3 deployments, latency": lambda: table.resolve("latency"),
        "3 deployments, weighted, one cooling": with_one_cooling,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    table = build()
    for name, call in cases(table).items():
        table.balancer.cooldowns.until = {}
        rounds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.calls):
                call()
            rounds.append((time.perf_counter() - started) / args.calls * 1e6)
        print(f"{name:42s} {statistics.median(rounds):6.2f} µs per decision")


if __name__ == "__main__":
    main()
