"""A node's engine or a node's Asterisk killed under load, through the edge.

    python -m bench.cluster_failover [--faults engine,asterisk] [--rate 30]
                                     [--seconds 12] [--kill-at 4] [--talk-ms 2000]

Issue 15's goal: a node or its engine killed under load -> 0 calls failed
once the edge has marked it down, 0 CDRs lost, calls clean on the remaining
node within the probing interval (<= 5 s). Per fault it brings up the
cluster sandbox (two nodes, an engine each, the edge, a throwaway PostgreSQL;
``bench/cluster.py``'s rig), places ``--rate`` calls/s for ``--seconds``
through the edge (each talks ``--talk-ms``), and ``--kill-at`` seconds in:

- ``engine``: SIGKILLs node1's engine (its Asterisk stays up and answers the
  edge's probes: the node is never marked down; its dialplan answers 503 at
  once, ``cluster.node_engine_retries`` = 0, and the edge retries on node2);
- ``asterisk``: stops node1's Asterisk (the probe marks it down; calls sent
  to it meanwhile time out after ``cluster.node_timeout_ms`` and are retried).

``--restart-after`` seconds after the kill it restarts what it killed (as a
supervisor would), waits until both nodes are idle, and prints
per fault: calls placed / answered / failed, SIPp's retransmissions, the time
to answer p50/p99/max, seconds until the edge marked node1 down, the calls
answered per node, CDRs written for the calls answered (after the restart:
the killed engine's calls in flight are written by it when it is back), and
channels left on either node. Everything it starts it stops (by PID); it
holds the machine-wide Asterisk lock; traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.asterisk import default_config, exclusive_asterisk  # noqa: E402
from support.data import Seeder  # noqa: E402
from support.engine import EngineProcess  # noqa: E402

from bench.calls import (  # noqa: E402
    FORWARDED_DID,
    database,
    percentile,
    read_stats,
    sipp_command,
    stop_process,
)
from bench.cluster import EDGE_CALLER, Rig, engine, far_end, node_config, seed  # noqa: E402
from callcontrol.sandbox import cluster as sandbox_cluster  # noqa: E402
from callcontrol.sandbox import cluster_edge, control, process  # noqa: E402
from callcontrol.sandbox.config import SandboxConfig  # noqa: E402
from callcontrol.sandbox.layout import SandboxLayout  # noqa: E402
from provisioning.kamailio_config import ClusterSettings  # noqa: E402

FAULTS = ("engine", "asterisk")
KILLED = "node1"


@dataclass
class Outcome:
    fault: str
    placed: int
    answered: int
    failed: int
    retransmissions: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    marked_down_s: float | None
    per_node: dict[str, int]
    cdrs: int
    channels_left: int

    def line(self) -> str:
        down = "never" if self.marked_down_s is None else f"{self.marked_down_s:.2f} s"
        return (
            f"{self.fault:8} placed {self.placed} answered {self.answered} failed {self.failed} "
            f"retr {self.retransmissions} p50/p99/max {self.p50_ms}/{self.p99_ms}/{self.max_ms} "
            f"ms; node1 marked down after {down}; answered per node {self.per_node}; "
            f"CDRs {self.cdrs}/{self.answered}; channels left {self.channels_left}"
        )


def cdr_count(url: str) -> int:
    return len(Seeder(url).cdrs_for(FORWARDED_DID))


def answered_per_node(rig: Rig, url: str) -> dict[str, int]:
    """Answered calls per node so far (a CDR id carries its node's systemname)."""
    counts: dict[str, int] = {}
    for row in Seeder(url).cdrs_for(FORWARDED_DID):
        if row["disposition"] == "answered":
            node = next((n.name for n in rig.cluster.nodes if row["id"].startswith(n.name)), "?")
            counts[node] = counts.get(node, 0) + 1
    return counts


def flags(rig: Rig) -> str:
    """The dispatcher's flags of the node killed (``A...`` active, ``I...`` inactive)."""
    uris = {node.name: node.sip_uri for node in rig.cluster.nodes}
    return cluster_edge.dispatcher_flags(rig.layout.edge_dir, uris).get(KILLED, "")


def restart(fault: str, rig: Rig, node: SandboxLayout, configs: dict[str, SandboxConfig]) -> None:
    """What was killed comes back; the engine re-adopts its calls and writes their CDRs."""
    if fault == "asterisk":
        control.up(node, configs[KILLED], rig.layout.media)
        rig.engines[KILLED].stop()
    rig.engines[KILLED].start()


def run_fault(
    fault: str, rig: Rig, url: str, configs: dict[str, SandboxConfig], args: argparse.Namespace
) -> Outcome:
    folder = rig.workdir / f"fault-{fault}"
    folder.mkdir()
    calls = args.rate * args.seconds
    cdrs_before, per_node_before = cdr_count(url), answered_per_node(rig, url)
    command = sipp_command(
        "bench_cluster_caller_forward.xml", EDGE_CALLER, 5070, folder,
        remote=f"{rig.cluster.edge_address}:{rig.cluster.edge_port}",
        service=FORWARDED_DID[1:], rate=args.rate, calls=calls, timeout_s=args.seconds + 60,
    )  # fmt: skip
    node = rig.layout.node(KILLED)
    with open(folder / "stdout.txt", "wb") as out:
        sipp = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder
        )
    marked_down: float | None = None
    try:
        time.sleep(args.kill_at)
        killed_at = time.monotonic()
        if fault == "engine":
            rig.engines[KILLED].kill()
        else:
            (pid,) = process.asterisk_pids(node)
            process.stop(node, pid)
        restarted = False
        while sipp.poll() is None:
            if marked_down is None and flags(rig).startswith("I"):
                marked_down = time.monotonic() - killed_at
            if not restarted and time.monotonic() - killed_at >= args.restart_after:
                restart(fault, rig, node, configs)  # as a supervisor would (systemd)
                restarted = True
            time.sleep(0.05)
        if not restarted:
            restart(fault, rig, node, configs)
    finally:
        if sipp.poll() is None:
            try:
                sipp.wait(timeout=args.seconds + 90)
            except subprocess.TimeoutExpired:
                stop_process(sipp)
    rig.settle()
    stats = read_stats(folder)
    deadline = time.monotonic() + 20
    while cdr_count(url) - cdrs_before < stats.succeeded and time.monotonic() < deadline:
        time.sleep(0.5)
    return Outcome(
        fault=fault, placed=stats.attempted or calls, answered=stats.succeeded,
        failed=stats.failed + max(0, calls - stats.succeeded - stats.failed),
        retransmissions=stats.retransmissions, p50_ms=percentile(stats.response_ms, 50),
        p99_ms=percentile(stats.response_ms, 99),
        max_ms=max(stats.response_ms) if stats.response_ms else None,
        marked_down_s=marked_down, per_node={
            node: count - per_node_before.get(node, 0)
            for node, count in answered_per_node(rig, url).items()
        },
        cdrs=cdr_count(url) - cdrs_before, channels_left=rig.channels(),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_failover")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--kill-at", type=float, default=4.0)
    parser.add_argument("--talk-ms", type=int, default=2000)
    parser.add_argument(
        "--restart-after", type=float, default=2.0, help="seconds from the kill to the restart"
    )
    args = parser.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; choose from {FAULTS}")
    workdir = Path(tempfile.mkdtemp(prefix="callcontrol-bench-failover-"))
    print(f"bench.cluster_failover: work folder {workdir}", flush=True)
    cluster = ClusterSettings()
    layout = sandbox_cluster.ClusterLayout.default()
    base = default_config()
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        url = stack.enter_context(database("postgresql", workdir))
        seed(url)
        stack.enter_context(exclusive_asterisk())
        stack.callback(sandbox_cluster.down, layout, cluster)
        engines: dict[str, EngineProcess] = {}
        configs: dict[str, SandboxConfig] = {}
        for node in cluster.nodes:
            sandbox_cluster.ensure_node_root(layout.base, layout.node(node.name))
            configs[node.name] = config = node_config(base, cluster, node.name)
            control.up(layout.node(node.name), config, layout.media)
            engines[node.name] = engine(layout, config, url, workdir, node.name)
            engines[node.name].start()
            stack.callback(engines[node.name].stop)
        stack.enter_context(far_end(workdir, args.talk_ms))
        sandbox_cluster.start_edge(layout, cluster)
        rig = Rig(workdir, layout, cluster, engines)
        for fault in faults:
            deadline = time.monotonic() + 15
            while not flags(rig).startswith("A") and time.monotonic() < deadline:
                time.sleep(0.2)  # node1 back in after the last fault
            outcome = run_fault(fault, rig, url, configs, args)
            outcomes.append(outcome)
            print(f"  {outcome.line()}", flush=True)
    print(f"\n{args.rate} calls/s for {args.seconds} s, node1 killed {args.kill_at} s in:")
    for outcome in outcomes:
        print(outcome.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
