"""What an open, idle stream holds in the gateway's memory, by where it was allocated.

    python -m bench.stream_memory [--streams 1000] [--path /v1/chat/completions]

Runs the mock upstream and a gateway (as `gateway serve` runs it, one worker), turns Python's
`tracemalloc` on once it is warm and at rest, opens `--streams` slow streams (one chunk a
second, as the benchmark's memory phase does), and once each has its first chunk compares a
snapshot of the gateway's Python allocations with one taken at rest: the bytes per open
stream, grouped by the line that allocated them, and the process's RSS growth beside them
(RSS also holds what Python does not trace: the allocator's free lists, and tracemalloc's own
records; the kernel's socket buffers are not in RSS at all). Tracing slows the gateway; the
figures are sizes, not timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench import run as bench
from bench.loadgen import hold_open

FRAMES = 12  # enough to see past asyncio and aiohttp to the gateway's own call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: the traced gateway
    args = parser.parse_args()
    if args.serve:
        serve_traced(args.serve)
        return
    mock, mock_port, gw_port = bench.tool_harness()
    folder = Path(tempfile.mkdtemp())
    try:
        config = bench.gateway_config(mock_port)
        command = [sys.executable, "-m", "bench.stream_memory", "--serve", f"{config}:{gw_port}"]
        env = {**os.environ, "BENCH_SNAPSHOTS": str(folder)}
        gateway = subprocess.Popen(bench.pinned(0, command), cwd=bench.ROOT, env=env)
        bench.wait_healthy(gw_port)
        try:
            rss = bench.run_loop(measure(gateway, mock_port, gw_port, args, folder))
        finally:
            bench.stop(gateway)
    finally:
        mock.terminate()
    report(folder, args.streams, rss, args.top)


async def measure(
    gateway: subprocess.Popen[bytes],
    mock_port: int,
    gw_port: int,
    args: argparse.Namespace,
    folder: Path,
) -> tuple[float, float]:
    process = bench.Process(gateway.pid)
    target = {t.name: t for t in bench.targets(mock_port, gw_port, 10, 1000)}
    chosen = target[f"gateway {args.path}"]
    warm = asyncio.get_running_loop().create_future()
    print("warming up", flush=True)
    await hold_open(chosen, 50, warm)  # warm-up: imports, caches, the pool's first connections
    print("at rest", flush=True)
    _snapshot(gateway, folder / "rest.snapshot")
    print("opening", flush=True)
    rest = process.memory_kib("VmRSS")
    opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    holding = asyncio.ensure_future(hold_open(chosen, args.streams, opened))
    await opened
    _snapshot(gateway, folder / "open.snapshot")
    held = process.memory_kib("VmRSS")
    results = await holding
    if bench.faults(results):
        raise SystemExit("errors or short streams")
    return rest, held


def _snapshot(gateway: subprocess.Popen[bytes], path: Path) -> None:
    gateway.send_signal(signal.SIGUSR1)
    while not path.exists():  # written by the gateway's process
        time.sleep(0.05)


def report(folder: Path, streams: int, rss: tuple[float, float], top: int) -> None:
    rest = tracemalloc.Snapshot.load(str(folder / "rest.snapshot"))
    held = tracemalloc.Snapshot.load(str(folder / "open.snapshot"))
    traced = sum(s.size for s in held.statistics("filename")) - sum(
        s.size for s in rest.statistics("filename")
    )
    print(f"{streams} open streams: RSS {rss[0] / 1024:.1f} → {rss[1] / 1024:.1f} MiB, ", end="")
    print(f"{(rss[1] - rss[0]) / streams:.1f} KiB per stream; traced by Python: ", end="")
    print(f"{traced / streams / 1024:.1f} KiB per stream\n")
    print("| allocated in | the gateway's nearest frame | bytes per stream | objects |")
    print("|---|---|---|---|")
    for stat in held.compare_to(rest, "traceback")[:top]:
        frames = list(reversed(stat.traceback))  # the allocating frame first
        where = f"{_short(frames[0].filename)}:{frames[0].lineno}"
        ours = next((f for f in frames if "/gateway/" in f.filename), None)
        via = f"{_short(ours.filename)}:{ours.lineno}" if ours is not None else ""
        size, count = stat.size_diff / streams, stat.count_diff / streams
        print(f"| {where} | {via} | {size:.0f} | {count:.1f} |")
    print("\nBy file:\n")
    print("| file | bytes per stream |")
    print("|---|---|")
    for stat in held.compare_to(rest, "filename")[:top]:
        name = _short(stat.traceback[0].filename)
        print(f"| {name} | {stat.size_diff / streams:.0f} |")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/gateway/", "lib/python3"):
        if marker in filename:
            cut = filename.split(marker, 1)[1]
            return ("gateway/" + cut) if marker == "/gateway/" else cut
    return filename


def serve_traced(where: str) -> None:
    folder = Path(os.environ["BENCH_SNAPSHOTS"])
    names = iter(("rest.snapshot", "open.snapshot"))

    def dump(*_: object) -> None:
        # Tracing starts at rest (tracing start-up too would make it take minutes): what the
        # streams allocate from then on, and still hold, is the difference of the snapshots.
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)
        path = folder / next(names)
        tracemalloc.take_snapshot().dump(f"{path}.part")
        os.replace(f"{path}.part", path)  # whole, once the driver sees it

    signal.signal(signal.SIGUSR1, dump)
    bench.serve_gateway(where, "--log-level", "warning")


if __name__ == "__main__":
    main()
