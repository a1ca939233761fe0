"""Peers for `make bench-peers`: the same phases against other gateways, in the same run.

- `naive`: a 40-line FastAPI + httpx relay (`bench/naive_relay.py`), the baseline a team
  would write first;
- `portkey`: Portkey's open-source gateway (`@portkey-ai/gateway`, pinned in
  `bench/peers/package.json`; its `@hono/node-server` is pinned to 1.13.5, with which its
  streams work), run with Node as its README says.

Each peer is pinned to the gateway's core and measured exactly like it: same mock, same load
client, same phases; only one server is loaded at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTKEY = ROOT / "bench" / "peers" / "node_modules" / "@portkey-ai" / "gateway" / "build"


@dataclass(frozen=True)
class Peer:
    name: str
    port: int
    headers: bytes  # extra request headers the peer needs to reach the mock


def naive(mock_port: int, port: int) -> tuple[Peer, list[str], dict[str, str]]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.naive_relay:app",
        "--port",
        str(port),
    ]
    env = {**os.environ, "NAIVE_UPSTREAM": f"http://127.0.0.1:{mock_port}/v1"}
    return Peer("naive FastAPI+httpx relay", port, b""), command, env


def portkey(mock_port: int, port: int) -> tuple[Peer, list[str], dict[str, str]]:
    node = shutil.which("node")
    script = PORTKEY / "start-server.js"
    if node is None or not script.exists():
        raise SystemExit("bench-peers needs Node.js and `npm ci --prefix bench/peers`")
    headers = (
        b"x-portkey-provider: openai\r\n"
        b"x-portkey-custom-host: http://127.0.0.1:%d/v1\r\n"
        b"authorization: Bearer bench\r\n" % mock_port
    )
    command = [node, str(script), f"--port={port}", "--headless"]
    return Peer("Portkey gateway 1.15.2", port, headers), command, dict(os.environ)


STARTERS = (naive, portkey)


def start(
    starter: object, mock_port: int, port: int, pin: list[str]
) -> tuple[Peer, subprocess.Popen[bytes]]:
    peer, command, env = starter(mock_port, port)  # type: ignore[operator]
    # Each as its README runs it (uvicorn's defaults: info, with its access log), its
    # output to a file like the gateway's.
    with tempfile.NamedTemporaryFile(prefix="bench-peer-", suffix=".log", delete=False) as log:
        process = subprocess.Popen([*pin, *command], cwd=ROOT, env=env, stdout=log, stderr=log)
    return peer, process
