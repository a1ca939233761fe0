"""`make bench-node`: an independent harness, a Node mock upstream and a Node load generator.

Beside `make bench-peers`, so that the two can be compared (issue 29): the same servers under
test, started the same way (`bench.run.start_gateway`, `bench.peers`' starters) and pinned to
core 0, only one loaded at a time; but the upstream is `bench/node/mock.mjs` and the client is
`bench/node/load.mjs`, both on core 1. Rows: direct (the mock), the gateway's
`/v1/chat/completions` and `/stream?format=sse`, and with `--peers` the naive relay and Portkey.
Per row: chunks/s at concurrency 50 and 200 (each a warm-up, then a timed run), CPU seconds per
1,000 streams of the server, of the load client and of the mock, and time to first chunk added
over direct. Any fault fails the run.

`--cross` also runs the direct, gateway and Portkey rows at c=50 under each pairing of mock
(Python, Node) and load client (Python; Node on raw sockets; Node's http.Agent), to tell which
part of a harness moves a figure.

Run: python -m bench.node_harness [--peers] [--quick] [--cross]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import run
from bench.loadgen import Results, Target, closed_loop, sequential
from bench.peers import Peer
from bench.run import Process, free_port, percentile, pinned

NODE_DIR = Path(__file__).resolve().parent / "node"
LEVELS = (50, 200)
CHUNKS = run.CHUNKS
ROWS = ("direct", "gateway /v1/chat/completions", "gateway /stream?format=sse")
HARNESS_CORE = 1
HARNESS_LIMIT_PCT = 90  # the harness core's busy share above which a row is flagged
STEADY = 0.85  # halves of a timed run further apart than this are flagged, as bench/run.py does


@dataclass(frozen=True)
class Profile:
    seconds: float
    warmup: float
    ttft_samples: int


FULL = Profile(seconds=6.0, warmup=5.0, ttft_samples=300)  # Portkey warms up over ~6 s
QUICK = Profile(seconds=3.0, warmup=2.0, ttft_samples=100)


@dataclass
class Load:
    """One load run's outcome, whichever client ran it."""

    streams: int
    seconds: float
    cpu_s: float  # the load client's own CPU over the run
    faults: int
    detail: str = ""  # what the faults were
    ttft_ms: list[float] = field(default_factory=list)


def combined(loads: list[Load]) -> Load:
    """Consecutive runs of one row taken as one."""
    return Load(
        streams=sum(load.streams for load in loads),
        seconds=sum(load.seconds for load in loads),
        cpu_s=sum(load.cpu_s for load in loads),
        faults=sum(load.faults for load in loads),
        detail="; ".join(load.detail for load in loads if load.faults),
    )


def node() -> str:
    binary = shutil.which("node")
    if binary is None:
        raise SystemExit("bench-node needs Node.js (apt-get install nodejs)")
    return binary


def node_spec(target: Target) -> dict[str, Any]:
    """What load.mjs needs to know of a target, as JSON."""
    headers = {}
    for line in target.headers.decode("latin1").split("\r\n"):
        if line:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
    return {
        "port": target.port,
        "path": target.path,
        "body": target.body.decode("latin1"),
        "headers": headers,
        "terminator": target.terminator.decode("latin1"),
        "events": target.events,
    }


def parse_node_load(line: str) -> Load:
    """load.mjs's JSON line, its faults summed (an unfinished stream is one)."""
    result = json.loads(line)
    kinds = ("errors", "short", "unterminated", "unfinished")
    faults = sum(int(result[kind]) for kind in kinds)
    detail = ", ".join(f"{result[kind]} {kind}" for kind in kinds if result[kind])
    if result["statuses"]:
        detail += f" (statuses {result['statuses']})"
    return Load(
        streams=int(result["streams"]),
        seconds=float(result.get("seconds", 0.0)),
        cpu_s=float(result.get("cpu_s", 0.0)),
        faults=faults,
        detail=detail,
        ttft_ms=[float(t) for t in result["ttft_ms"]],
    )


def node_load(target: Target, client: str = "net", **mode: float) -> Load:
    """load.mjs on the harness core: `concurrency` + `seconds`, or `ttft_samples`; its `net`
    client (raw sockets), or its `agent` one (Node's http client)."""
    spec = json.dumps({**node_spec(target), "client": client, **mode})
    command = pinned(HARNESS_CORE, [node(), str(NODE_DIR / "load.mjs"), spec])
    done = subprocess.run(command, capture_output=True, check=True, text=True)
    return parse_node_load(done.stdout.strip().splitlines()[-1])


def python_load(target: Target, **mode: float) -> Load:
    """bench/loadgen.py in this process (pinned to the harness core), as `make bench` runs it."""
    me = Process(os.getpid())
    cpu, started = me.cpu_seconds(), time.perf_counter()
    results: Results
    if "ttft_samples" in mode:
        results = run.run_loop(sequential(target, int(mode["ttft_samples"])))
    else:
        results = run.run_loop(closed_loop(target, int(mode["concurrency"]), mode["seconds"]))
    return Load(
        streams=results.streams,
        seconds=time.perf_counter() - started,
        cpu_s=me.cpu_seconds() - cpu,
        faults=run.faults(results),
        detail=f"{results.errors} errors, {results.short} short, "
        f"{results.unterminated} unterminated",
        ttft_ms=[t * 1000 for t in results.ttfc],
    )


CLIENTS: dict[str, Callable[..., Load]] = {
    "node": node_load,
    "node http.Agent": functools.partial(node_load, client="agent"),
    "python": python_load,
}


def start_node_mock(port: int) -> subprocess.Popen[bytes]:
    command = pinned(HARNESS_CORE, [node(), str(NODE_DIR / "mock.mjs"), str(port)])
    mock = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert mock.stdout is not None
    if mock.stdout.readline().strip() != b"ready":
        raise SystemExit("the Node mock did not start")
    return mock


def start_mock(kind: str, port: int) -> subprocess.Popen[bytes]:
    return start_node_mock(port) if kind == "node" else run.start_mock(port, HARNESS_CORE)


class Harness:
    """One mock, the servers under test pointed at it, and the measurements of one client."""

    def __init__(self, profile: Profile, mock_port: int, mock_pid: int) -> None:
        self.profile = profile
        self.mock_port = mock_port
        self.mock = Process(mock_pid)
        self.servers: dict[str, Process] = {}
        self.gw_port = 0
        self.peers: tuple[Peer, ...] = ()
        self.faults: list[str] = []
        self.warnings: list[str] = []

    def targets(self, chunks: int, delay_ms: int, names: tuple[str, ...]) -> list[Target]:
        every = run.targets(self.mock_port, self.gw_port, chunks, delay_ms, self.peers)
        return [target for target in every if target.name in names]

    def names(self) -> tuple[str, ...]:
        return ROWS + tuple(peer.name for peer in self.peers)

    def check(self, what: str, load: Load) -> None:
        if load.faults:
            self.faults.append(f"{what}: {load.detail}")

    def ttft(self, client: str) -> dict[str, dict[str, float]]:
        rows = {}
        for target in self.targets(4, 20, self.names()):
            load = CLIENTS[client](target, ttft_samples=self.profile.ttft_samples)
            self.check(f"ttft {target.name}", load)
            rows[target.name] = {
                "p50_ms": percentile(load.ttft_ms, 0.5),
                "p99_ms": percentile(load.ttft_ms, 0.99),
                "samples": len(load.ttft_ms),
            }
        return rows

    def throughput(
        self, client: str, levels: tuple[int, ...], names: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        rows = []
        for level in levels:
            for target in self.targets(CHUNKS, 0, names):
                rows.append(self.one(client, target, level))
        return rows

    def one(self, client: str, target: Target, level: int) -> dict[str, Any]:
        measure = CLIENTS[client]
        warm = measure(target, concurrency=level, seconds=self.profile.warmup)
        self.check(f"c={level} {target.name} (warm-up)", warm)
        server = self.servers.get(target.process) if target.name != "direct" else None
        before = (server.cpu_seconds() if server else 0.0, self.mock.cpu_seconds())
        # Two halves, as bench/run.py times a level: a server still warming up shows.
        halves = [measure(target, concurrency=level, seconds=self.profile.seconds / 2)]
        halves.append(measure(target, concurrency=level, seconds=self.profile.seconds / 2))
        after = (server.cpu_seconds() if server else 0.0, self.mock.cpu_seconds())
        load = combined(halves)
        self.check(f"c={level} {target.name}", load)
        first, second = (half.streams / half.seconds for half in halves)
        if min(first, second) < STEADY * max(first, second):
            self.warnings.append(
                f"c={level} {target.name}: not steady ({first:.0f} then {second:.0f} streams/s)"
            )
        per_1000 = 1000 / load.streams if load.streams else float("nan")
        server_cpu, mock_cpu = after[0] - before[0], after[1] - before[1]
        row: dict[str, Any] = {
            "concurrency": level,
            "target": target.name,
            "streams_s": load.streams / load.seconds,
            "chunks_s": load.streams * CHUNKS / load.seconds,
            "client_cpu_s_per_1000": load.cpu_s * per_1000,
            "mock_cpu_s_per_1000": mock_cpu * per_1000,
            # How busy each core was: a harness core near 100 % while the server's is not
            # means the harness, not the server, set the figure.
            "harness_core_pct": (load.cpu_s + mock_cpu) / load.seconds * 100,
        }
        if server is not None:
            row["cpu_s_per_1000"] = server_cpu * per_1000
            row["server_core_pct"] = server_cpu / load.seconds * 100
        if server is not None and row["harness_core_pct"] > HARNESS_LIMIT_PCT:
            self.warnings.append(
                f"c={level} {target.name}: the harness core was "
                f"{row['harness_core_pct']:.0f} % busy: the harness may be the limit"
            )
        return row


@contextmanager
def servers(harness: Harness, with_peers: bool) -> Iterator[Harness]:
    """The gateway (and the peers) on core 0, pointed at the harness's mock."""
    harness.gw_port = free_port()
    gateway = run.start_gateway(harness.mock_port, harness.gw_port)
    started = [gateway]
    try:
        peers = run.start_peers(harness.mock_port) if with_peers else {}
        started += peers.values()
        harness.peers = tuple(peers)
        harness.servers = {"gateway": Process(gateway.pid)}
        harness.servers.update({peer.name: Process(p.pid) for peer, p in peers.items()})
        yield harness
    finally:
        for process in started:
            run.stop(process)


@contextmanager
def mocked(kind: str, profile: Profile) -> Iterator[Harness]:
    port = free_port()
    mock = start_mock(kind, port)
    try:
        yield Harness(profile, port, mock.pid)
    finally:
        mock.terminate()
        mock.wait(timeout=10)


def measure(profile: Profile, with_peers: bool) -> dict[str, Any]:
    with mocked("node", profile) as harness, servers(harness, with_peers):
        ttft = harness.ttft("node")
        rows = harness.throughput("node", LEVELS, harness.names())
        return {
            "ttft": ttft,
            "throughput": rows,
            "faults": harness.faults,
            "warnings": harness.warnings,
        }


CROSS_ROWS = ("direct", "gateway /v1/chat/completions", "Portkey gateway 1.15.2")


def cross(profile: Profile, with_peers: bool) -> dict[str, Any]:
    """Each pairing of mock and load client at c=50: which half moves a figure."""
    rows, faults, warnings = [], [], []
    for mock_kind in ("python", "node"):
        with mocked(mock_kind, profile) as harness, servers(harness, with_peers):
            for client in CLIENTS:
                for row in harness.throughput(client, (50,), CROSS_ROWS):
                    rows.append({"mock": mock_kind, "client": client, **row})
            faults += harness.faults
            warnings += harness.warnings
    return {"cross": rows, "faults": faults, "warnings": warnings}


TTFT_HEAD = [
    "| time to first chunk (c=1, 20 ms between chunks) | p50 ms | p99 ms | added p50 | added p99 |",
    "|---|---|---|---|---|",
]
THROUGHPUT_HEAD = [
    "| throughput (64 chunks/stream, no delay) | concurrency | streams/s | chunks/s "
    "| % of direct | server CPU s / 1000 streams | load client CPU s / 1000 | "
    "mock CPU s / 1000 | server core busy | harness core busy |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def render(report: dict[str, Any]) -> str:
    lines = [f"Harness: Node mock + Node load client; {report['mode']}, {report['machine']}.", ""]
    lines += [*TTFT_HEAD, *run._ttfc_rows(report["ttft"]), "", *THROUGHPUT_HEAD]
    lines += [_throughput_row(row, report["throughput"]) for row in report["throughput"]]
    lines += ["", *ratios(report["throughput"])]
    if "cross" in report:
        lines += ["", *render_cross(report["cross"])]
    lines += ["", f"Faults: {len(report['faults'])}."]
    lines += [f"- fault: {fault}" for fault in report["faults"]]
    lines += [f"- warning: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def _cpu(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.2f}" if key in row else ""


def _throughput_row(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    direct = _find(rows, "direct", row["concurrency"])
    share = row["chunks_s"] / direct["chunks_s"] * 100 if direct and direct["chunks_s"] else 0
    return (
        f"| {row['target']} | {row['concurrency']} | {row['streams_s']:.0f} | "
        f"{row['chunks_s']:.0f} | {share:.0f} % | {_cpu(row, 'cpu_s_per_1000')} | "
        f"{row['client_cpu_s_per_1000']:.2f} | {row['mock_cpu_s_per_1000']:.2f} | "
        f"{_pct(row, 'server_core_pct')} | {_pct(row, 'harness_core_pct')} |"
    )


def _pct(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.0f} %" if key in row else ""


def _find(rows: list[dict[str, Any]], target: str, level: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["target"] == target and r["concurrency"] == level), None)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Same-run ratios, gateway row / peer row: chunks/s, and the peer's CPU over the gateway's."""
    peers = [r["target"] for r in rows if r["concurrency"] == LEVELS[0] and r["target"] not in ROWS]
    if not peers:
        return []
    head = " | ".join(f"x {name} (chunks/s) | x {name} (CPU)" for name in peers)
    lines = [f"| gateway against its peers, same run | concurrency | {head} |"]
    lines.append("|---|---|" + "---|---|" * len(peers))
    for row in rows:
        if not row["target"].startswith("gateway "):
            continue
        cells = []
        for name in peers:
            peer = _find(rows, name, row["concurrency"])
            assert peer is not None
            speed = row["chunks_s"] / peer["chunks_s"] if peer["chunks_s"] else float("nan")
            cpu = peer["cpu_s_per_1000"] / row["cpu_s_per_1000"] if row["cpu_s_per_1000"] else 0
            cells.append(f"{speed:.2f}x | {cpu:.2f}x")
        lines.append(f"| {row['target']} | {row['concurrency']} | {' | '.join(cells)} |")
    return lines


def render_cross(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| mock + load client, c=50 | target | chunks/s | server CPU s / 1000 | "
        "load client CPU s / 1000 | mock CPU s / 1000 | server core busy | harness core busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['mock']} mock + {row['client']} client | {row['target']} | "
            f"{row['chunks_s']:.0f} | {_cpu(row, 'cpu_s_per_1000')} | "
            f"{row['client_cpu_s_per_1000']:.2f} | {row['mock_cpu_s_per_1000']:.2f} | "
            f"{_pct(row, 'server_core_pct')} | {_pct(row, 'harness_core_pct')} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, 100 TTFT samples")
    parser.add_argument("--peers", action="store_true", help="also the naive relay and Portkey")
    parser.add_argument(
        "--cross", action="store_true", help="also each pairing of Python/Node mock and client"
    )
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {HARNESS_CORE})
    profile = QUICK if args.quick else FULL
    report = measure(profile, args.peers)
    if args.cross:
        crossed = cross(profile, args.peers)
        report["cross"] = crossed["cross"]
        report["faults"] += crossed["faults"]
        report["warnings"] += crossed["warnings"]
    report["mode"] = "quick" if args.quick else "full"
    report["machine"] = run.machine()
    run.RESULTS.mkdir(exist_ok=True)
    (run.RESULTS / f"node-{report['mode']}.json").write_text(json.dumps(report, indent=2))
    print(render(report))
    if report["faults"]:
        raise SystemExit(f"bench-node: {len(report['faults'])} runs with faults")


if __name__ == "__main__":
    main()
