"""The forward case through the Kamailio edge, with 1 and 2 nodes.

    python -m bench.cluster [--rates 20,50] [--seconds 10] [--nodes 1,2] [--talk-ms 100]
    python -m bench.cluster --edge-only [--rates 300] [--seconds 10]

Brings up the cluster sandbox's nodes (``callcontrol/sandbox/cluster.py``), a
throwaway PostgreSQL, an engine per node, a SIPp far end on 127.0.3.31:5080
(answers at once, hangs up after ``--talk-ms``) and a DID forwarded to it.
For each node count it starts the edge with that many nodes in its dispatcher
list and runs, per rate, ``--seconds`` of calls:

- ``edge``: caller 127.0.3.21 -> edge 127.0.3.1 -> a node -> engine -> far end;
- ``direct`` (1 node only): caller 127.0.3.22 -> node1 straight, the baseline
  the edge is compared with (node1 also takes calls from 127.0.3.22 here).

Per step: SIPp's counts, the time to answer (INVITE -> 200, ``-trace_rtt``)
p50/p99, and the CPU Kamailio (all its processes), every Asterisk and every
engine used per call (``/proc`` deltas until the system is idle again).
Everything it starts it stops (by PID); it holds the machine-wide Asterisk
lock for the whole run. Traffic stays on 127.0.0.0/8.

``--edge-only``: Kamailio's own cost, without Asterisk (no lock needed): a
second edge on 127.0.3.41 in front of a SIPp "node" on 127.0.3.42 that answers
at once, callers on 127.0.3.23 (``cluster_caller.xml``, 100 ms calls); once
with the package's default allocator and once with ``-x fm`` (the sandbox's).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.asterisk import default_config, exclusive_asterisk  # noqa: E402
from support.data import Seeder  # noqa: E402
from support.engine import EngineProcess  # noqa: E402

from bench.calls import (  # noqa: E402
    FORWARDED_DID,
    SCENARIOS,
    cpu_seconds,
    database,
    percentile,
    read_stats,
    sipp_command,
    stop_process,
)
from callcontrol.domain.vocabulary import DestinationType  # noqa: E402
from callcontrol.sandbox import cluster as sandbox_cluster  # noqa: E402
from callcontrol.sandbox import cluster_edge, control, process  # noqa: E402
from callcontrol.sandbox.config import SandboxConfig  # noqa: E402
from callcontrol.sandbox.layout import MEDIA_MOUNT_POINT  # noqa: E402
from provisioning.kamailio_config import ClusterSettings  # noqa: E402

EDGE_CALLER = "127.0.3.21"
DIRECT_CALLER = "127.0.3.22"
FAR = ("127.0.3.31", 5080)
SETTLE_LIMIT_S = 30.0


@dataclass
class Step:
    nodes: int
    rate: int
    path: str
    attempted: int
    succeeded: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    edge_ms_per_call: float
    asterisk_ms_per_call: float
    engine_ms_per_call: float


@contextmanager
def far_end(workdir: Path, talk_ms: int) -> Iterator[subprocess.Popen[bytes]]:
    folder = workdir / "far-end"
    folder.mkdir()
    text = (SCENARIOS / "bench_far_answer_bye.xml").read_text(encoding="utf-8")
    marker = '<recv request="INVITE" timeout="100" ontimeout="bye"/>'
    scenario = folder / "far.xml"
    scenario.write_text(text.replace(marker, marker.replace("100", str(max(1, talk_ms)))))
    with open(folder / "stdout.txt", "wb") as out:
        far = subprocess.Popen(
            sipp_command(str(scenario), *FAR, folder),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
        )  # fmt: skip
    try:
        time.sleep(0.5)
        yield far
    finally:
        stop_process(far)


def node_config(base: SandboxConfig, cluster: ClusterSettings, name: str) -> SandboxConfig:
    """The node's sandbox config; node1 also takes the direct caller's calls."""
    config = sandbox_cluster.node_config(base, cluster, cluster.node(name))
    assert config.node_plan is not None
    if name != "node1":
        return config
    plan = config.node_plan
    address = plan.address.model_copy(
        update={"carrier_match": (cluster.edge_address, DIRECT_CALLER)}
    )
    return replace(config, node_plan=replace(plan, address=address))


@dataclass
class Rig:
    workdir: Path
    layout: sandbox_cluster.ClusterLayout
    cluster: ClusterSettings
    engines: dict[str, EngineProcess]
    counter: int = 0

    def asterisk_pids(self) -> list[int]:
        pids: list[int] = []
        for node in self.cluster.nodes:
            pids += process.asterisk_pids(self.layout.node(node.name))
        return pids

    def cpu(self) -> tuple[float, float, float]:
        edge = sum(cpu_seconds(pid) for pid in cluster_edge.all_pids(self.layout.edge_dir))
        asterisk = sum(cpu_seconds(pid) for pid in self.asterisk_pids())
        engines = sum(cpu_seconds(e.proc.pid) for e in self.engines.values() if e.proc)
        return edge, asterisk, engines

    def channels(self) -> int:
        """Channels in all the nodes' Asterisks now."""
        total = 0
        for node in self.cluster.nodes:
            text = process.cli(self.layout.node(node.name), "core show channels count")
            total += int(text.split(" active channel")[0].strip().split()[-1])
        return total

    def settle(self) -> None:
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while time.monotonic() < deadline and self.channels():
            time.sleep(0.5)

    def run_step(self, nodes: int, rate: int, seconds: int, path: str) -> Step:
        self.counter += 1
        folder = self.workdir / f"{self.counter:02d}-{nodes}-{rate}-{path}"
        folder.mkdir()
        calls = rate * seconds
        caller, remote = (
            (EDGE_CALLER, f"{self.cluster.edge_address}:{self.cluster.edge_port}")
            if path == "edge"
            else (DIRECT_CALLER, f"{self.cluster.nodes[0].address}:5060")
        )
        command = sipp_command(
            "bench_cluster_caller_forward.xml", caller, 5070, folder, remote=remote,
            service=FORWARDED_DID[1:], rate=rate, calls=calls, timeout_s=seconds + 40,
        )  # fmt: skip
        before = self.cpu()
        with open(folder / "stdout.txt", "wb") as out:
            sipp = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder
            )
        try:
            sipp.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            stop_process(sipp)
        self.settle()
        after = self.cpu()
        stats = read_stats(folder)
        attempted = stats.attempted or calls
        per_call = [
            round((b - a) * 1000 / attempted, 3) for a, b in zip(before, after, strict=True)
        ]
        return Step(
            nodes=nodes, rate=rate, path=path, attempted=attempted, succeeded=stats.succeeded,
            failed=stats.failed + max(0, attempted - stats.succeeded - stats.failed),
            p50_ms=percentile(stats.response_ms, 50), p99_ms=percentile(stats.response_ms, 99),
            edge_ms_per_call=per_call[0], asterisk_ms_per_call=per_call[1],
            engine_ms_per_call=per_call[2],
        )  # fmt: skip


def engine(layout: sandbox_cluster.ClusterLayout, config: SandboxConfig, db_url: str,
           workdir: Path, name: str) -> EngineProcess:  # fmt: skip
    return EngineProcess(
        env={
            "CALLCONTROL_ENVIRONMENT": "test",
            "CALLCONTROL_DATABASE__URL": db_url,
            "CALLCONTROL_ARI__URL": f"http://{config.http_host}:{config.http_port}",
            "CALLCONTROL_ARI__USERNAME": config.ari_username,
            "CALLCONTROL_ARI__PASSWORD": config.ari_password,
            "CALLCONTROL_ARI__APP": config.ari_app,
            "CALLCONTROL_MEDIA__ROOT": str(layout.media),
            "CALLCONTROL_MEDIA__ASTERISK_ROOT": MEDIA_MOUNT_POINT,
            "CALLCONTROL_LOG_FORMAT": "json",
            "CALLCONTROL_FORWARDING__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
            "CALLCONTROL_SPOOL__PATH": str(workdir / f"spool-{name}.db"),
        },
        log_path=workdir / f"engine-{name}.log",
    )


def seed(url: str) -> None:
    seeder = Seeder(url)
    account = seeder.account(balance_minor=1_000_000)
    seeder.number(
        account, did=FORWARDED_DID,
        destinations=[(DestinationType.SIP_URI, f"sip:far@{FAR[0]}:{FAR[1]}", 20)],
    )  # fmt: skip


def edge_only(rate: int, seconds: int, workdir: Path) -> None:
    from provisioning.kamailio_config import ClusterNode, render_kamailio_config

    folder = workdir / "edge-only"
    cluster = ClusterSettings(
        edge_address="127.0.3.41", nodes=(ClusterNode(name="uas", address="127.0.3.42"),),
        carrier_match=("127.0.3.23/32",), config_dir=str(folder), run_dir=str(folder),
    )  # fmt: skip
    cluster_edge.install(folder, render_kamailio_config(cluster))
    uas_cmd = sipp_command(str(SCENARIOS / "far_answer.xml"), "127.0.3.42", 5060, folder)
    uas = subprocess.Popen(
        [*uas_cmd, "-aa", "-set", "answer_ms", "0", "-m", "10000000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for allocator in ((), ("-x", "fm")):
            log = (folder / "kamailio.log").open("ab")
            edge = subprocess.Popen(
                ["kamailio", "-DD", "-E", *allocator, "-f", str(folder / "kamailio.cfg")],
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
            try:
                cluster_edge.wait_ready(folder, edge.pid, "127.0.3.41", 5060)
                pids = cluster_edge.all_pids(folder)
                before = sum(cpu_seconds(pid) for pid in pids)
                calls = rate * seconds
                step = folder / f"step-{len(allocator)}"
                step.mkdir()
                caller = sipp_command(
                    str(SCENARIOS / "cluster_caller.xml"), "127.0.3.23", 5070, step,
                    remote="127.0.3.41:5060", service="4930", rate=rate, calls=calls,
                    timeout_s=seconds + 30, extra=("-key", "caller", "4915", "-d", "100"),
                )  # fmt: skip
                null = subprocess.DEVNULL
                subprocess.run(caller, stdout=null, stderr=null, check=False, cwd=step)
                time.sleep(1)
                used = sum(cpu_seconds(pid) for pid in pids) - before
                stats = read_stats(step)
                name = " ".join(allocator) or "default (q_malloc)"
                print(
                    f"edge only, allocator {name}: {stats.succeeded}/{calls} ok at {rate}/s, "
                    f"Kamailio {used * 1000 / calls:.3f} ms CPU per call",
                    flush=True,
                )
            finally:
                stop_process(edge)
    finally:
        stop_process(uas)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--edge-only", action="store_true")
    parser.add_argument("--rates", default="20,50")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--talk-ms", type=int, default=100)
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    counts = [int(n) for n in args.nodes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="callcontrol-bench-cluster-"))
    if args.edge_only:
        for rate in rates:
            edge_only(rate, args.seconds, workdir)
        return 0
    full = ClusterSettings()
    layout = sandbox_cluster.ClusterLayout.default()
    base = default_config()
    steps: list[Step] = []
    print(f"bench.cluster: work folder {workdir}", flush=True)
    with ExitStack() as stack:
        db_url = stack.enter_context(database("postgresql", workdir))
        seed(db_url)
        stack.enter_context(exclusive_asterisk())
        stack.callback(sandbox_cluster.down, layout, full)
        engines: dict[str, EngineProcess] = {}
        for node in full.nodes:
            sandbox_cluster.ensure_node_root(layout.base, layout.node(node.name))
            config = node_config(base, full, node.name)
            control.up(layout.node(node.name), config, layout.media)
            engines[node.name] = engine(layout, config, db_url, workdir, node.name)
            engines[node.name].start()
            stack.callback(engines[node.name].stop)
        stack.enter_context(far_end(workdir, args.talk_ms))
        for count in counts:
            cluster = full.model_copy(update={"nodes": full.nodes[:count]})
            sandbox_cluster.start_edge(layout, cluster)
            rig = Rig(workdir, layout, cluster, {n.name: engines[n.name] for n in cluster.nodes})
            paths = ("direct", "edge") if count == 1 else ("edge",)
            for rate in rates:
                for path in paths:
                    step = rig.run_step(count, rate, args.seconds, path)
                    steps.append(step)
                    print(f"  {step}", flush=True)
    print("\nnodes rate path   ok/attempted failed p50_ms p99_ms edge_ms/call asterisk_ms/call "
          "engine_ms/call")  # fmt: skip
    for s in steps:
        print(f"{s.nodes:5} {s.rate:4} {s.path:6} {s.succeeded:5}/{s.attempted:<5} {s.failed:6} "
              f"{s.p50_ms!s:6} {s.p99_ms!s:6} {s.edge_ms_per_call:12} {s.asterisk_ms_per_call:16} "
              f"{s.engine_ms_per_call:14}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
