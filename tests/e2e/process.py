"""The gateway as users run it: `gateway serve` in its own process."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

_RUNNING = re.compile(r"Uvicorn running on (http://\S+)")
GUARD_S = 20


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    url: str = ""
    log: list[str] = field(default_factory=list)
    logged: asyncio.Event = field(default_factory=asyncio.Event)  # set at every new line

    async def exit_code(self) -> int:
        async with asyncio.timeout(GUARD_S):
            return await self.process.wait()

    async def wait_for_log(self, text: str, count: int = 1) -> None:
        """Wait until `count` log lines contain `text` (the process's own word that it got
        somewhere: a signal handled, a state reached)."""
        async with asyncio.timeout(GUARD_S):
            while sum(text in line for line in self.log) < count:
                self.logged.clear()
                await self.logged.wait()


@asynccontextmanager
async def gateway_process(*args: str, config: Path | None = None) -> AsyncIterator[GatewayProcess]:
    """Start `python -m gateway serve --port 0 …`; yield once it listens; stop it after."""
    command = [sys.executable, "-m", "gateway", "serve", "--port", "0", *args]
    if config is not None:
        command += ["--config", str(config)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    gateway = GatewayProcess(process)
    started = asyncio.Event()
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    reader = asyncio.ensure_future(_read_log(gateway, started, workers))
    try:
        async with asyncio.timeout(GUARD_S):
            await started.wait()
        yield gateway
    finally:
        if process.returncode is None:
            process.terminate()
            with suppress(TimeoutError):
                async with asyncio.timeout(GUARD_S):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        await reader


async def _read_log(gateway: GatewayProcess, started: asyncio.Event, workers: int) -> None:
    """Set `started` once the address is known and every worker has started its app."""
    assert gateway.process.stdout is not None
    ready = 0
    async for raw in gateway.process.stdout:
        line = raw.decode(errors="replace").rstrip()
        gateway.log.append(line)
        gateway.logged.set()
        if match := _RUNNING.search(line):
            gateway.url = match.group(1)
        ready += "Application startup complete" in line
        if gateway.url and ready >= workers:
            started.set()
    started.set()  # the process ended before listening: let the caller see why
