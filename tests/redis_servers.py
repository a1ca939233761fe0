"""Throwaway Redis servers the tests start themselves: a standalone one they may kill, and a
three-node Redis Cluster. Missing binaries fail the test (never a skip): `make test` installs
them (the Debian package redis-server brings redis-cli too)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

GUARD_S = 20


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is required: `apt-get install redis-server` (make test does it)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    for _ in range(200):
        port = random.randrange(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    pytest.fail("no free port pair for a Redis Cluster node")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start(port: int, *args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    command = [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd
    )
    deadline = time.monotonic() + GUARD_S
    while not _ping(port):  # a condition, polled with a guard: redis-server has no ready signal
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"redis-server on port {port} did not start")
        time.sleep(0.02)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=GUARD_S)


@contextmanager
def standalone_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private redis-server (the test may kill it): its URL and process."""
    port = free_port()
    process = _start(port)
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        _stop(process)


@contextmanager
def redis_cluster(directory: Path) -> Iterator[str]:
    """Three masters (`--cluster-enabled yes`) joined by `redis-cli --cluster create`; the URL
    of the first node (clients discover the others)."""
    ports = [free_cluster_port() for _ in range(3)]
    processes = []
    try:
        for port in ports:
            node = directory / str(port)
            node.mkdir()
            processes.append(
                _start(
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    cwd=node,
                )
            )
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *nodes, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=GUARD_S,
        )
        deadline = time.monotonic() + GUARD_S
        while not all(_cluster_ok(port) for port in ports):  # slots agreed on every node
            if time.monotonic() > deadline:
                pytest.fail("the Redis Cluster did not become healthy")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            _stop(process)


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(
        [_binary("redis-cli"), "-p", str(port), "cluster", "info"],
        capture_output=True,
        timeout=GUARD_S,
        check=False,
    ).stdout
    return b"cluster_state:ok" in info
