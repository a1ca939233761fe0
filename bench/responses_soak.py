"""Stored responses stay bounded in memory (SPEC §4.10, §6): many stored Responses API answers
through the translated path, in process, with a small retention budget; RSS is sampled as
they accumulate and should level off once the budget is full.

    .venv/bin/python -m bench.responses_soak --requests 30000 --budget-mib 8

Prints one line per sample: requests made, entries kept, bytes the budget counts, RSS (MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
from pathlib import Path

import httpx

from gateway.app import create_app
from gateway.settings import Settings, load_settings

CONFIG = """
[providers.fake]
type = "fake"
chunk_delay_ms = 0
chunking = "line"
"""


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def settings_with(budget_mib: int) -> Settings:
    path = Path("bench-responses-soak.toml")
    path.write_text(CONFIG)
    try:
        return load_settings(path, resume={"resume_retained_max_bytes": budget_mib * 2**20})
    finally:
        path.unlink()


async def soak(settings: Settings, requests: int, samples: int) -> None:
    app = create_app(settings)
    body = {"model": "story", "input": "tell me the story", "store": True, "stream": True}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            retained = app.state.gateway.retained  # stored responses share its budget
            step = max(1, requests // samples)
            for n in range(1, requests + 1):
                response = await http.post("/v1/responses", json=body)
                assert response.status_code == 200, response.text
                if n % step == 0:
                    gc.collect()
                    line = f"{n:>8} {len(retained):>7} {retained.bytes:>11} {rss_mib():8.1f}"
                    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--budget-mib", type=int, default=8)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    print(" requests entries budget_bytes rss_mib")
    asyncio.run(soak(settings_with(args.budget_mib), args.requests, args.samples))


if __name__ == "__main__":
    main()
