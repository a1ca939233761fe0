"""Two gateways side by side: this tree and another checkout, measured in turns.

A single benchmark run on a shared machine moves by about ±15 % from phase to phase; a change
of a few per cent needs both versions measured in the same minutes. This starts the mock
upstream, a gateway from this tree and one from BASE (another checkout, e.g. a
`git worktree` at the commit before a change, run with this tree's virtualenv), and measures
each target on both in turn for several rounds. It prints the median gateway CPU per stream.

    git worktree add /tmp/base HEAD~3
    python -m bench.ab /tmp/base --concurrency 50 "/stream?format=sse" "/ui/chat"
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess

from bench import run as bench
from bench.loadgen import closed_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", help="the other checkout's root")
    parser.add_argument("targets", nargs="+", help='target names, e.g. "/stream?format=sse"')
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--chunks", type=int, default=bench.CHUNKS)
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    mock_port = bench.free_port()
    mock = bench.start_mock(mock_port, core=1)
    gateways: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for side, pythonpath in (("this", None), ("base", args.base)):
            port = bench.free_port()
            if pythonpath:  # the console script puts no tree on sys.path: this one wins
                os.environ["PYTHONPATH"] = pythonpath
            gateways[side] = (port, bench.start_gateway(mock_port, port))
            os.environ.pop("PYTHONPATH", None)
        cpu = bench.run_loop(measure(args, mock_port, gateways))
    finally:
        for _, gateway in gateways.values():
            bench.stop(gateway)
        mock.terminate()
    for name in args.targets:
        before, after = statistics.median(cpu["base", name]), statistics.median(cpu["this", name])
        change = 100 * (after / before - 1)
        print(f"{name:40s} base {before:.3f}  this {after:.3f} ms CPU/stream  ({change:+.1f} %)")


async def measure(
    args: argparse.Namespace,
    mock_port: int,
    gateways: dict[str, tuple[int, subprocess.Popen[bytes]]],
) -> dict[tuple[str, str], list[float]]:
    """Each target on each side in turn, `rounds` times: CPU ms per stream, per run."""
    cpu: dict[tuple[str, str], list[float]] = {}
    targets = {
        side: {t.name: t for t in bench.targets(mock_port, port, args.chunks, 0)}
        for side, (port, _) in gateways.items()
    }
    for _ in range(args.rounds):
        for name in args.targets:
            for side, (_, gateway) in gateways.items():
                process = bench.Process(gateway.pid)
                before = process.cpu_seconds()
                results = await closed_loop(
                    targets[side]["gateway " + name], args.concurrency, args.seconds
                )
                spent = process.cpu_seconds() - before
                if bench.faults(results) or not results.streams:
                    raise SystemExit(f"{side} {name}: errors or short streams")
                cpu.setdefault((side, name), []).append(1000 * spent / results.streams)
    return cpu


if __name__ == "__main__":
    main()
