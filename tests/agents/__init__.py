"""Agents the suite runs for real against the gateway (tests/e2e/test_claude_code.py,
tests/e2e/test_codex.py).

They are pinned in tests/agents/package-lock.json and installed outside the clone (Claude Code
and Codex are native binaries of ~200 MB per platform), in a cache keyed by the lock's hash, so that every
checkout and CI run on a machine shares one install: `make agents` installs it when missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

__all__ = ["AGENTS_CACHE", "agents_dir", "claude_binary", "codex_binary", "run_agent"]

HERE = Path(__file__).parent
AGENTS_CACHE = Path(os.environ.get("GATEWAY_AGENTS_CACHE", "/var/cache/llm-gateway-agents"))


def agents_dir() -> Path:
    """Where this lock's install lives: the cache, under the lock's SHA-256."""
    digest = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()
    return AGENTS_CACHE / digest


def claude_binary() -> Path:
    """Claude Code's executable; an AssertionError (never a skip) when it is not installed."""
    return _binary("claude", "Claude Code")


def codex_binary() -> Path:
    """Codex's executable (its linux-x64 build is an optional dependency of @openai/codex)."""
    return _binary("codex", "Codex")


def _binary(name: str, agent: str) -> Path:
    installed = agents_dir()
    binary = installed / "node_modules" / ".bin" / name
    assert (installed / ".installed").exists() and binary.exists(), (
        f"{agent} is not installed in {installed}: run `make agents`"
    )
    return binary


async def run_agent(
    binary: Path, *args: str, cwd: Path, home: Path, env: dict[str, str]
) -> tuple[int, str, str]:
    """Run an agent to its end in `cwd`, with `home` (an empty folder) as HOME and only `env`
    besides PATH (nothing from the developer's shell: no keys, no config): exit status,
    stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        str(binary),
        *args,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):  # a bound, not a synchronisation: a hang fails the test
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
