"""Faults under load through real Asterisk: what callers lose, what is left behind.

    python -m bench.faults [--cases kill9,socket-cut,...] [--db postgresql|sqlite]
                           [--rate 30] [--hold 5-10] [--json PATH] [--quick] [--keep]
                           [--baseline REV] [--edge CALLS_PER_S]

One Asterisk sandbox (with a private ARI app name, ``bench-faults-<pid>``),
one database (a throwaway PostgreSQL cluster or a SQLite file) and, per case,
a fresh engine process (``callcontrol serve``), fresh DIDs and a fresh load:
SIPp callers on 127.0.0.2 place ``--rate`` calls/s for ``LOAD_S`` seconds to a
DID forwarded to a SIPp far end on 127.0.0.3:5080 that answers at once and
holds each call ``--hold`` seconds, then hangs up (about rate x mean hold calls
live). A prober (127.0.0.7, its own DID, far end 127.0.0.4:5080) places a
short call every ~150 ms throughout. At ``FAULT_AT_S`` the case's fault is
injected (see ``CASES``); then the load runs out, the system settles, and one
row is printed per case (see docs/faults.md for how each number is counted).

``--edge N``: the Asterisk is the cluster sandbox's node1 (127.0.3.11) with a
Kamailio edge (127.0.3.1, ``callcontrol/sandbox/cluster.py``) in front of it
whose admission limit is N calls/s; every case runs twice in turns, ``direct``
(callers 127.0.3.22 -> node1) and ``edge`` (callers 127.0.3.21 -> edge ->
node1), far ends on 127.0.3.31/.32 (``EDGE_PATHS``).

Bounded: every SIPp run has a call count and ``-timeout``, every wait a
deadline. Traffic stays on 127.0.0.0/8. Only processes this run started are
stopped, by PID. Channels and bridges left in Asterisk are counted, then
cleared, so the next case starts clean; Asterisk is stopped at the end unless
it was already running with this configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.asterisk import AsteriskSandbox, asterisk_sandbox, default_config  # noqa: E402
from support.data import Seeder  # noqa: E402
from support.engine import EngineProcess  # noqa: E402
from support.fault_calls import CallRecord, caller_scenario, far_end_scenario  # noqa: E402
from support.faults import (  # noqa: E402
    AriProxy,
    Prober,
    SippRole,
    ari_get,
    cdr_callers,
    clear_asterisk,
    leftovers,
    percentile,
    recovery_s,
    wait_bound,
)
from support.postgres import PostgresCluster  # noqa: E402

from bench import cluster as bench_cluster  # noqa: E402
from bench.calls import machine, read_stats, rss_mb  # noqa: E402
from callcontrol.db.engine import upgrade  # noqa: E402
from callcontrol.domain.vocabulary import DestinationType  # noqa: E402
from callcontrol.sandbox import cluster_edge  # noqa: E402
from callcontrol.sandbox import process as sandbox_process  # noqa: E402
from callcontrol.sandbox.cluster import ClusterLayout, ensure_node_root, start_edge  # noqa: E402
from callcontrol.sandbox.config import SandboxConfig  # noqa: E402
from callcontrol.sandbox.errors import SandboxError  # noqa: E402
from callcontrol.settings import DatabaseSettings  # noqa: E402
from provisioning.kamailio_config import ADMITTED_COUNTER, SHED_COUNTER, ClusterSettings  # noqa: E402

ASTERISK = "127.0.0.1:5060"
CARRIER = "127.0.0.2"
FAR_END = ("127.0.0.3", 5080)
BURST_FAR_END = ("127.0.0.3", 5081)
PROBE_FAR_END = ("127.0.0.4", 5080)
CALLER_PREFIX = "4915100"
BURST_PREFIX = "4915200"
#: The dialplan's own answer when no engine is connected (Stasis() failed,
#: ``Hangup(34)``): such a call never reached the engine, so it has no CDR.
FALLBACK = ("503", "34")


@dataclass(frozen=True)
class SignallingPath:
    """Where a case's callers send their INVITEs, and from which addresses."""

    name: str
    target: str
    carrier: str
    prober: tuple[str, int]
    far_end: tuple[str, int]
    burst_far_end: tuple[str, int]
    probe_far_end: tuple[str, int]
    proxied: bool = False
    """Through a record-routing proxy: ACK and BYE follow the 200's route set."""
    engine_env: tuple[tuple[str, str], ...] = ()
    """Settings of this path's engine over the run's ``--engine-env``."""


STRAIGHT = SignallingPath(
    "", ASTERISK, CARRIER, ("127.0.0.7", 5070), FAR_END, BURST_FAR_END, PROBE_FAR_END
)
_CLUSTER_FAR = (("127.0.3.31", 5080), ("127.0.3.31", 5081), ("127.0.3.32", 5080))
#: ``--edge``: straight to the cluster's node1 (``bench.cluster.DIRECT_CALLER``,
#: which node1 accepts as a carrier) and through the edge. Behind the edge the
#: node's fixed ceiling is off: the edge is the admission point (its tenths of a
#: second and the dialplan's are not aligned, so the two would shed twice).
EDGE_PATHS = (
    SignallingPath(" direct", "127.0.3.11:5060", "127.0.3.22", ("127.0.3.22", 5072), *_CLUSTER_FAR),
    SignallingPath(
        " edge", "127.0.3.1:5060", "127.0.3.21", ("127.0.3.21", 5072), *_CLUSTER_FAR,
        proxied=True, engine_env=(("CALLCONTROL_CALLS__MAX_CALL_RATE", "0"),),
    ),
)  # fmt: skip
CASES = (
    "baseline", "kill9", "socket-cut", "second-engine", "asterisk-restart",
    "db-stop", "sigstop", "overload2x", "overload4x",
)  # fmt: skip


@dataclass(frozen=True)
class Timing:
    load_s: float = 45.0
    fault_at_s: float = 15.0
    outage_s: float = 10.0  # db-stop; overload burst length
    second_engine_s: float = 15.0
    sigstop_s: float = 15.0
    settle_s: float = 20.0

    @classmethod
    def quick(cls) -> Timing:
        return cls(load_s=20, fault_at_s=6, outage_s=5, second_engine_s=6, sigstop_s=6, settle_s=10)


@dataclass
class Row:
    case: str
    placed: int = 0
    answered: int = 0
    failed: int = 0
    failed_by_code: dict[str, int] = field(default_factory=dict)
    answered_before_fault: int = 0
    dropped: int = 0
    ended_late: int = 0
    far_cut: int = 0
    stuck: int = 0
    cdrs_expected: int = 0
    cdrs_missing: int = 0
    cdrs_duplicated: int = 0
    channels_left: int = 0
    bridges_left: int = 0
    recovery_s: float | None = None
    retransmissions: int = 0
    probes: int = 0
    probes_failed: int = 0
    spool_peak: float | None = None
    p99_answer_ms: float | None = None
    p99_503_ms: float | None = None
    engine_rss_mb: float = 0.0
    asterisk_rss_mb: float = 0.0
    fault_start_s: float = 0.0
    fault_end_s: float = 0.0
    engine_errors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---- the rig ---------------------------------------------------------------------


@dataclass
class Database:
    kind: str
    url: str
    cluster: PostgresCluster | None = None
    sqlite_path: Path | None = None


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[Database]:
    if kind == "sqlite":
        path = workdir / "faults.db"
        url = f"sqlite+aiosqlite:///{path}"
        asyncio.run(upgrade(DatabaseSettings(url=url)))
        yield Database(kind, url, sqlite_path=path)
        return
    cluster = PostgresCluster.start()
    try:
        cluster.create_database("faults")
        url = cluster.url("faults")
        asyncio.run(upgrade(DatabaseSettings(url=url)))
        yield Database(kind, url, cluster=cluster)
    finally:
        cluster.stop()


@dataclass
class Rig:
    workdir: Path
    sandbox: AsteriskSandbox
    db: Database
    timing: Timing
    rate: int
    hold_ms: tuple[int, int]
    clean_rate: int
    asterisk_pid: int = 0
    engine_env: dict[str, str] = field(default_factory=dict)
    engine_root: Path | None = None
    """Run the engine from this source tree (a ``--baseline``), else from this checkout."""
    path: SignallingPath = STRAIGHT

    def engine(self, log_path: Path, ari_url: str | None = None) -> EngineProcess:
        box = self.sandbox
        return EngineProcess(
            env={
                "CALLCONTROL_ENVIRONMENT": "test",
                "CALLCONTROL_DATABASE__URL": self.db.url,
                "CALLCONTROL_ARI__URL": ari_url or box.ari_url,
                "CALLCONTROL_ARI__USERNAME": box.ari_username,
                "CALLCONTROL_ARI__PASSWORD": box.ari_password,
                "CALLCONTROL_ARI__APP": box.app,
                "CALLCONTROL_MEDIA__ROOT": str(box.media_dir),
                "CALLCONTROL_MEDIA__ASTERISK_ROOT": box.media_asterisk_root,
                "CALLCONTROL_LOG_FORMAT": "json",
                "CALLCONTROL_LOG_LEVEL": "info",
                "CALLCONTROL_FORWARDING__ALLOWED_NETWORKS": '["127.0.0.0/8"]',  # far ends
                "CALLCONTROL_SPOOL__PATH": str(log_path.parent / "spool.db"),
                **self.engine_env,
            },
            log_path=log_path,
            cwd=self.engine_root,
        )

    def ari(self, path: str) -> object:
        box = self.sandbox
        return ari_get(box.ari_base_url, path, box.ari_username, box.ari_password)

    def channel_count(self) -> int:
        try:
            channels = self.ari("/channels")
        except OSError:
            return -1
        return len(channels) if isinstance(channels, list) else -1


def seed_case(url: str, index: int, path: SignallingPath = STRAIGHT) -> dict[str, str]:
    """Three DIDs for one case: load, probe and burst, each forwarded to its far end."""
    seeder = Seeder(url)
    account = seeder.account(balance_minor=10**9)
    dids = {}
    ends = (("load", path.far_end), ("probe", path.probe_far_end), ("burst", path.burst_far_end))
    for role, (ip, port) in ends:
        did = f"+4930888{index:02d}{('load', 'probe', 'burst').index(role) + 1:03d}"
        target = f"sip:far@{ip}:{port}"
        seeder.number(account, did=did, destinations=[(DestinationType.SIP_URI, target, 20)])
        dids[role] = did
    return dids


class MetricsSampler:
    """Polls the engine's /metrics for ``callcontrol_spool_depth`` every 0.5 s."""

    def __init__(self, engine: Callable[[], EngineProcess]) -> None:
        self.engine = engine
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MetricsSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with suppress(Exception):
                depth = spool_depth(self.engine().metrics())
                if depth is not None:
                    self.peak = depth if self.peak is None else max(self.peak, depth)


def spool_depth(metrics: str) -> float | None:
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("callcontrol_spool_depth")
    ]
    return sum(values) if values else None


# ---- the faults ------------------------------------------------------------------


@dataclass
class Fault:
    """What a case did: when its fault began and ended (epoch s), and notes."""

    start: float = 0.0
    end: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class CaseContext:
    rig: Rig
    folder: Path
    engine: EngineProcess
    proxy: AriProxy | None
    dids: dict[str, str]
    extra_engines: list[EngineProcess] = field(default_factory=list)
    burst: SippRole | None = None


def fault_none(ctx: CaseContext) -> Fault:
    """The baseline: the same load and accounting with no fault, to show what 0 looks like."""
    now = time.time()
    return Fault(now, now)


def fault_kill9(ctx: CaseContext) -> Fault:
    fault = Fault(start=time.time())
    ctx.engine.kill()
    try:
        ctx.engine.start(timeout_s=90)
    except RuntimeError as exc:
        fault.notes.append(f"restarted engine not connected: {str(exc)[:200]}")
    fault.end = time.time()
    fault.notes.append(f"engine back (ARI connected) {fault.end - fault.start:.1f} s after kill")
    return fault


def fault_socket_cut(ctx: CaseContext) -> Fault:
    assert ctx.proxy is not None
    start = time.time()
    cut = ctx.proxy.cut()
    return Fault(start, start, [f"{cut} ARI connections cut"])


def fault_second_engine(ctx: CaseContext) -> Fault:
    second = ctx.rig.engine(ctx.folder / "engine-second.log")
    ctx.extra_engines.append(second)
    fault = Fault(start=time.time())
    try:
        second.start(timeout_s=ctx.rig.timing.second_engine_s)
    except RuntimeError as exc:
        fault.notes.append(f"second engine not connected: {str(exc).splitlines()[0][:160]}")
    time.sleep(max(0.0, fault.start + ctx.rig.timing.second_engine_s - time.time()))
    second.stop()
    fault.end = time.time()
    return fault


def fault_asterisk_restart(ctx: CaseContext) -> Fault:
    rig = ctx.rig
    layout, config = rig.sandbox.layout, rig.sandbox.config
    state = sandbox_process.read_state(layout)
    assert state is not None
    fault = Fault(start=time.time())
    sandbox_process.stop(layout, rig.asterisk_pid)
    new = sandbox_process.start(layout, state.fingerprint)
    sandbox_process.wait_for_ari(layout, config, new.pid, 60)
    rig.asterisk_pid = new.pid
    fault.end = time.time()
    fault.notes.append(f"Asterisk back (ARI answers) {fault.end - fault.start:.1f} s after stop")
    return fault


def fault_db_stop(ctx: CaseContext) -> Fault:
    rig = ctx.rig
    seconds = rig.timing.outage_s
    fault = Fault(start=time.time())
    if rig.db.cluster is not None:
        rig.db.cluster.stop_server()
        time.sleep(max(0.0, fault.start + seconds - time.time()))
        rig.db.cluster.start_server()
    else:
        assert rig.db.sqlite_path is not None
        script = (
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "time.sleep(float(sys.argv[2]))\n"
            "db.execute('ROLLBACK')\n"
        )
        locker = subprocess.run(
            [sys.executable, "-c", script, str(rig.db.sqlite_path), str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 40,
            check=False,
        )
        if locker.returncode != 0:
            fault.notes.append(f"lock holder failed: {locker.stderr.strip()[-200:]}")
    fault.end = time.time()
    return fault


def fault_sigstop(ctx: CaseContext) -> Fault:
    assert ctx.engine.proc is not None
    pid = ctx.engine.proc.pid
    fault = Fault(start=time.time())
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(ctx.rig.timing.sigstop_s)
    finally:
        os.kill(pid, signal.SIGCONT)
    fault.end = time.time()
    return fault


def fault_overload(factor: int) -> Callable[[CaseContext], Fault]:
    def inject(ctx: CaseContext) -> Fault:
        rig = ctx.rig
        rate = rig.clean_rate * factor
        seconds = rig.timing.outage_s
        assert ctx.burst is None
        ctx.burst = SippRole(
            "burst",
            ctx.folder / "burst",
            caller_scenario(caller_prefix=BURST_PREFIX, wait_bye_s=20, proxied=rig.path.proxied),
            caller_args(
                rig.path.carrier,
                5071,
                ctx.dids["burst"][1:],
                rate,
                int(rate * seconds),
                60,
                rig.path.target,
            ),
        )
        fault = Fault(start=time.time())
        ctx.burst.start()
        time.sleep(seconds)
        fault.end = time.time()
        fault.notes.append(f"burst {rate}/s for {seconds:.0f} s ({factor}x {rig.clean_rate}/s)")
        return fault

    return inject


FAULTS: dict[str, Callable[[CaseContext], Fault]] = {
    "baseline": fault_none,
    "kill9": fault_kill9,
    "socket-cut": fault_socket_cut,
    "second-engine": fault_second_engine,
    "asterisk-restart": fault_asterisk_restart,
    "db-stop": fault_db_stop,
    "sigstop": fault_sigstop,
    "overload2x": fault_overload(2),
    "overload4x": fault_overload(4),
}


# ---- one case ----------------------------------------------------------------------


def caller_args(
    ip: str,
    port: int,
    service: str,
    rate: float,
    calls: int,
    timeout_s: float,
    target: str = ASTERISK,
) -> list[str]:
    """SIPp's arguments; its statistics (retransmissions) go to ``stat.csv`` in its folder."""
    return [
        "-i", ip, "-p", str(port), "-s", service, "-r", str(rate), "-m", str(calls),
        "-l", "20000", "-recv_timeout", "20000", "-timeout", f"{int(timeout_s)}s",
        "-max_socket", "2048", "-trace_stat", "-stf", "stat.csv", "-fd", "1", target,
    ]  # fmt: skip


def run_case(rig: Rig, case: str, index: int) -> Row:
    folder = rig.workdir / f"{index:02d}-{case}"
    folder.mkdir()
    path = rig.path
    dids = seed_case(rig.db.url, index, path)
    timing, hold_min, hold_max = rig.timing, *rig.hold_ms
    wait_bye_s = hold_max / 1000 + 10
    calls = int(rig.rate * timing.load_s)
    with ExitStack() as stack:
        proxy = stack.enter_context(AriProxy()) if case == "socket-cut" else None
        far = SippRole(
            "far",
            folder / "far",
            far_end_scenario(hold_min_ms=hold_min, hold_max_ms=hold_max),
            ["-i", path.far_end[0], "-p", str(path.far_end[1]), "-recv_timeout", "60000"],
        ).start()
        stack.callback(far.stop)
        wait_bound(far, *path.far_end)
        if case.startswith("overload"):
            burst_far = SippRole(
                "burst-far",
                folder / "burst-far",
                far_end_scenario(hold_min_ms=100, hold_max_ms=100),
                ["-i", path.burst_far_end[0], "-p", str(path.burst_far_end[1]),
                 "-recv_timeout", "60000"],
            ).start()  # fmt: skip
            stack.callback(burst_far.stop)
            wait_bound(burst_far, *path.burst_far_end)
        engine = rig.engine(folder / "engine.log", proxy.url if proxy is not None else None)
        ctx = CaseContext(rig, folder, engine, proxy, dids)
        engine.start(timeout_s=30)
        stack.callback(stop_engines, ctx)
        prober = Prober(
            folder, dids["probe"][1:], path.probe_far_end, caller_ip=path.prober[0],
            caller_port=path.prober[1], asterisk=path.target, max_seconds=timing.load_s + 120,
            proxied=path.proxied,
        ).start()  # fmt: skip
        stack.callback(prober.stop)
        sampler = stack.enter_context(MetricsSampler(lambda: ctx.engine))
        began = time.time()
        load = SippRole(
            "load",
            folder / "load",
            caller_scenario(
                caller_prefix=CALLER_PREFIX, wait_bye_s=wait_bye_s, proxied=path.proxied
            ),
            caller_args(
                path.carrier,
                5070,
                dids["load"][1:],
                rig.rate,
                calls,
                timing.load_s + wait_bye_s + 40,
                path.target,
            ),
        ).start()
        stack.callback(load.stop)
        time.sleep(max(0.0, began + timing.fault_at_s - time.time()))
        fault = FAULTS[case](ctx)
        print(
            f"  {case}: fault +{fault.start - began:.1f}s .. +{fault.end - began:.1f}s",
            flush=True,
        )
        load.wait(timing.load_s + wait_bye_s + 60)
        if ctx.burst is not None:
            ctx.burst.wait(60)
        # Probes keep going a little after the load, to see recovery after a late fault.
        time.sleep(max(0.0, min(10.0, fault.end + 10 - time.time())))
        prober.stop()
        settle(rig)
        box = rig.sandbox
        left = leftovers(box.ari_base_url, box.ari_username, box.ari_password, box.app)
        cdrs = stable_cdrs(rig.db.url, dids, timing.settle_s)
        row = Row(case=case, fault_start_s=fault.start - began, fault_end_s=fault.end - began)
        row.notes = fault.notes
        load_calls = load.calls()
        burst_calls = ctx.burst.calls() if ctx.burst is not None else {}
        count_calls(row, load_calls, burst_calls, far.calls(), fault.start, rig.hold_ms)
        row.retransmissions = sum(
            read_stats(role.folder).retransmissions for role in (load, ctx.burst) if role
        )
        count_cdrs(row, load_calls, cdrs["load"], CALLER_PREFIX)
        if burst_calls:
            burst_row = Row(case=case)
            count_cdrs(burst_row, burst_calls, cdrs["burst"], BURST_PREFIX)
            row.cdrs_expected += burst_row.cdrs_expected
            row.cdrs_missing += burst_row.cdrs_missing
            row.cdrs_duplicated += burst_row.cdrs_duplicated
        probes = prober.probes()
        row.probes, row.probes_failed = len(probes), sum(not p.ok for p in probes)
        row.recovery_s = recovery_s(probes, fault.start, fault.end)
        row.channels_left, row.bridges_left = len(left.channels), len(left.bridges)
        if not left.clean:
            row.notes.append(f"left: channels {left.channels[:5]}, bridges {left.bridges[:5]}")
            row.notes += describe_leftovers(folder, left.bridges[:3])
        row.spool_peak = sampler.peak
        if ctx.engine.proc is not None and ctx.engine.proc.poll() is None:
            row.engine_rss_mb = round(rss_mb(ctx.engine.proc.pid), 1)
        row.asterisk_rss_mb = round(rss_mb(rig.asterisk_pid), 1)
    row.engine_errors = engine_log_errors(folder)
    cleared = clear_asterisk(box.ari_base_url, box.ari_username, box.ari_password)
    if cleared:
        row.notes.append(f"cleared {cleared} channels/bridges after counting")
        settle(rig)  # the next case must not start while Asterisk is still tearing down
    return row


def stop_engines(ctx: CaseContext) -> None:
    for engine in (*ctx.extra_engines, ctx.engine):
        engine.stop()


def describe_leftovers(folder: Path, bridges: tuple[str, ...]) -> list[str]:
    """The engine's log lines of the calls whose bridges were left (bridge id = call id)."""
    notes = []
    logs = [p.read_text(errors="replace").splitlines() for p in folder.glob("engine*.log")]
    for bridge in bridges:
        call_id = bridge.removesuffix("-bridge").replace("_", ".")
        lines = [line[:300] for log in logs for line in log if f'"{call_id}"' in line]
        notes.append(f"bridge {bridge}: call {call_id}, engine log: {lines[:4]}")
    return notes


def settle(rig: Rig) -> None:
    deadline = time.monotonic() + rig.timing.settle_s
    while time.monotonic() < deadline and rig.channel_count() != 0:
        time.sleep(0.5)


def stable_cdrs(url: str, dids: dict[str, str], limit_s: float) -> dict[str, Counter[str]]:
    """CDRs per DID once their count stopped changing for 3 s (or after ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    last: dict[str, Counter[str]] = {}
    same = 0
    while True:
        try:
            now = {role: cdr_callers(url, did) for role, did in dids.items()}
        except Exception as exc:  # the database may still be coming back
            print(f"  (CDR read failed: {exc!r:.120})", file=sys.stderr)
            now = last
        same = same + 1 if now == last else 0
        last = now
        if same >= 3 or time.monotonic() > deadline:
            return last
        time.sleep(1.0)


def count_calls(
    row: Row,
    load: dict[str, CallRecord],
    burst: dict[str, CallRecord],
    far: dict[str, CallRecord],
    fault_start: float,
    hold_ms: tuple[int, int],
) -> None:
    calls = [c for c in (*load.values(), *burst.values()) if c.placed_at is not None]
    row.placed = len(calls)
    row.answered = sum(c.answered_at is not None for c in calls)
    failed = Counter(c.outcome for c in calls if c.answered_at is None)
    row.failed = sum(failed.values())
    row.failed_by_code = dict(failed.most_common())
    row.stuck = sum(c.end == "HUNG" for c in calls)
    answer_ms = [
        (c.answered_at - c.placed_at) * 1000
        for c in calls
        if c.answered_at is not None and c.placed_at is not None
    ]
    p99 = percentile(answer_ms, 99)
    row.p99_answer_ms = round(p99) if p99 is not None else None
    refused_ms = [
        (c.failed_at - c.placed_at) * 1000
        for c in calls
        if c.failed_code == 503 and c.failed_at is not None and c.placed_at is not None
    ]
    p99 = percentile(refused_ms, 99)
    row.p99_503_ms = round(p99) if p99 is not None else None
    callers = [c for c in load.values() if c.answered_at and c.answered_at < fault_start]
    row.answered_before_fault = len(callers)
    ends = Counter(how_it_ended(c, hold_ms) for c in callers)
    row.dropped, row.ended_late = ends["cut"] + ends["never"], ends["late"]
    legs = [c for c in far.values() if c.answered_at and c.answered_at < fault_start]
    # Anything but its own BYE answered 200; no end at all = SIPp aborted the call
    # on a BYE it did not expect at that point (see the far end's errors.log).
    row.far_cut = sum(c.end != "END" for c in legs)


#: How much later than the far end's longest hold a caller's BYE may come and
#: still count as the far end's own hang-up passed on (it normally takes ms).
BYE_SLACK_S = 2.0


def how_it_ended(call: CallRecord, hold_ms: tuple[int, int]) -> str:
    """``normal``, ``cut``, ``late`` or ``never``, for a caller's answered call.

    Normal: Asterisk's BYE came within the far end's hold window (its own BYE
    passed on). Earlier than the shortest hold: the call was ``cut``. Later
    than the longest hold (+ slack): ``late``, the far end had left and the
    caller sat alone until something hung it up. No BYE at all: ``never``.
    """
    if call.end != "BYE" or call.answered_at is None or call.ended_at is None:
        return "never"
    held = call.ended_at - call.answered_at
    if held < hold_ms[0] / 1000 - 0.25:
        return "cut"
    if held > hold_ms[1] / 1000 + BYE_SLACK_S:
        return "late"
    return "normal"


def caller_number(prefix: str, call_id: str) -> str:
    """SIPp's Call-ID is ``<call_number>-<pid>@<ip>``; the caller is prefix + call_number."""
    return prefix + call_id.split("-", 1)[0]


def count_cdrs(row: Row, calls: dict[str, CallRecord], cdrs: Counter[str], prefix: str) -> None:
    expected = [
        caller_number(prefix, c.call_id)
        for c in calls.values()
        if c.placed_at is not None and (str(c.failed_code), c.failed_cause) != FALLBACK
    ]
    row.cdrs_expected = len(expected)
    row.cdrs_missing = sum(cdrs.get(number, 0) == 0 for number in expected)
    row.cdrs_duplicated = sum(n > 1 for n in cdrs.values())


_EVENT = re.compile(r'"event":\s*"([^"]+)"')


def engine_log_errors(folder: Path) -> dict[str, int]:
    """Error/warning events of every engine of the case, by event name."""
    counts: Counter[str] = Counter()
    for log in folder.glob("engine*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if '"level":"error"' in line.replace(" ", "") or '"level":"warning"' in line.replace(
                " ", ""
            ):
                match = _EVENT.search(line)
                counts[match.group(1)[:60] if match else line[:60]] += 1
            elif "Traceback" in line:
                counts["Traceback"] += 1
    return dict(counts.most_common(8))


# ---- report ----------------------------------------------------------------------

COLUMNS = (
    ("case", "case"),
    ("placed", "placed"),
    ("failed", "failed"),
    ("failed_by_code", "failed by code"),
    ("dropped", "dropped / answered before"),
    ("ended_late", "BYE late"),
    ("far_cut", "far legs cut"),
    ("stuck", "never ended"),
    ("cdrs_missing", "CDRs missing / expected"),
    ("cdrs_duplicated", "CDR dup"),
    ("channels_left", "chan left"),
    ("bridges_left", "bridges left"),
    ("recovery_s", "clean again s"),
    ("retransmissions", "retrans"),
    ("probes_failed", "probes failed"),
    ("spool_peak", "spool peak"),
    ("p99_answer_ms", "p99 answer ms"),
    ("p99_503_ms", "p99 503 ms"),
    ("engine_rss_mb", "eng RSS MB"),
    ("asterisk_rss_mb", "ast RSS MB"),
)


def cell(row: Row, key: str) -> str:
    value = getattr(row, key)
    if key == "failed_by_code":
        return " ".join(f"{code}:{n}" for code, n in value.items()) or "-"
    if key == "dropped":
        return f"{row.dropped} / {row.answered_before_fault}"
    if key == "cdrs_missing":
        return f"{row.cdrs_missing} / {row.cdrs_expected}"
    if key == "probes_failed":
        return f"{row.probes_failed} / {row.probes}"
    if key == "recovery_s":
        return "not recovered" if value is None else f"{value:.1f}"
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def table(rows: list[Row]) -> str:
    header = [title for _, title in COLUMNS]
    body = [[cell(row, key) for key, _ in COLUMNS] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------------


def export_revision(rev: str, workdir: Path) -> Path:
    """``git archive REV`` of this repository into the work folder (its engine is
    run from there with this virtualenv, as ``bench.cpu --baseline`` does)."""
    target = workdir / f"rev-{rev.replace('/', '_')}"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {CASES}")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rate", type=int, default=None, help="load calls/s (30; --quick 10)")
    parser.add_argument("--hold", default=None, help="far end holds MIN-MAX s (5-10; --quick 2-4)")
    parser.add_argument(
        "--clean-rate", type=int, default=200, help="the clean forward rate the overloads multiply"
    )
    parser.add_argument("--quick", action="store_true", help="smaller and shorter (a smoke run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also run every case with the engine of this git revision, in turns (same run)",
    )
    parser.add_argument(
        "--engine-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for every engine, e.g. CALLCONTROL_CALLS__MAX_CALL_RATE=150",
    )
    parser.add_argument(
        "--edge",
        type=int,
        default=None,
        metavar="CALLS_PER_S",
        help="run on the cluster's node1 with a Kamailio edge in front admitting this many "
        "new calls/s; every case straight to the node and through the edge, in turns",
    )
    return parser.parse_args(argv)


@contextmanager
def edge_sandbox(config: SandboxConfig, max_call_rate: int) -> Iterator[AsteriskSandbox]:
    """The cluster sandbox's node1 (accepting ``bench.cluster.DIRECT_CALLER`` too)
    under the machine-wide lock, and the edge in front of it alone with
    ``max_call_rate``; both stopped at the end."""
    full = ClusterSettings(max_call_rate=max_call_rate)
    cluster = full.model_copy(update={"nodes": full.nodes[:1]})
    layout = ClusterLayout.default()
    node = layout.node("node1")
    ensure_node_root(layout.base, node)
    node_config = bench_cluster.node_config(config, cluster, "node1")
    with asterisk_sandbox(node_config, layout.media, layout=node) as box:
        try:
            start_edge(layout, cluster)
            yield box
        finally:
            cluster_edge.stop(layout.edge_dir)


def edge_summary(max_call_rate: int) -> str:
    """What the edge shed over the whole run (its counters), for the report."""
    try:
        counters = cluster_edge.edge_counters(ClusterLayout.default().edge_dir)
    except SandboxError as exc:
        return f"edge counters unreadable: {exc}"
    return (
        f"edge (limit {max_call_rate}/s): shed {counters.get(SHED_COUNTER, 0)}, "
        f"admitted {counters.get(ADMITTED_COUNTER, 0)} over the run"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in FAULTS]
    if unknown:
        print(f"bench.faults: unknown cases {unknown}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    if not shutil.which("sipp"):
        print("bench.faults: sipp not found (Debian package sip-tester)", file=sys.stderr)
        return 1
    timing = Timing.quick() if args.quick else Timing()
    rate = args.rate or (10 if args.quick else 30)
    hold_text = args.hold or ("2-4" if args.quick else "5-10")
    low, high = (float(part) for part in hold_text.split("-", 1))
    clean_rate = args.clean_rate // (4 if args.quick else 1)
    workdir = Path(tempfile.mkdtemp(prefix="callcontrol-faults-"))
    revision = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    engine_revision = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--", "callcontrol"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    revision = f"{revision} (engine code {engine_revision})"
    print(f"bench.faults: work folder {workdir}; {machine()}; HEAD {revision}", flush=True)
    rows: list[Row] = []
    began = time.monotonic()
    try:
        with ExitStack() as stack:
            db = stack.enter_context(database(args.db, workdir))
            config = replace(default_config(), ari_app=f"bench-faults-{os.getpid()}")
            if args.edge is not None:
                sandbox = stack.enter_context(edge_sandbox(config, args.edge))
                stack.callback(lambda: print(edge_summary(args.edge), flush=True))
            else:
                sandbox = stack.enter_context(asterisk_sandbox(config))
            print(f"bench.faults: Asterisk {sandbox.version}; db {args.db}; app {sandbox.app}")
            rig = Rig(
                workdir, sandbox, db, timing, rate, (int(low * 1000), int(high * 1000)),
                clean_rate, asterisk_pid=sandbox.pid,
                engine_env=dict(item.split("=", 1) for item in args.engine_env),
            )  # fmt: skip
            extra_env = rig.engine_env
            variants: list[tuple[str, Path | None]] = [("", None)]
            if args.baseline:
                base = export_revision(args.baseline, workdir)
                variants = [(f" @{args.baseline}", base), (" @HEAD", None)]
            paths = EDGE_PATHS if args.edge is not None else (STRAIGHT,)
            runs = [
                (case, path, name, root)
                for case in cases
                for name, root in variants
                for path in paths
            ]
            for index, (case, path, name, root) in enumerate(runs, start=1):
                started = time.monotonic()
                # A baseline engine may not know this checkout's newer settings.
                rig.engine_root, rig.path = root, path
                rig.engine_env = {} if root else {**extra_env, **dict(path.engine_env)}
                try:
                    row = run_case(rig, case, index)
                except Exception as exc:  # one broken case must not lose the others
                    row = Row(case=case, notes=[f"case failed: {exc!r:.300}"])
                    box = rig.sandbox
                    with suppress(Exception):
                        clear_asterisk(box.ari_base_url, box.ari_username, box.ari_password)
                row.case += path.name + name
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
                for note in row.notes:
                    print(f"    note: {note}", flush=True)
                if row.engine_errors:
                    print(f"    engine log warnings/errors: {row.engine_errors}", flush=True)
                print(f"    ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"machine: {machine()}; engine {revision}; db {args.db}; load {rate}/s for "
        f"{timing.load_s:.0f} s, hold {hold_text} s, fault at +{timing.fault_at_s:.0f} s; "
        f"run took {time.monotonic() - began:.0f} s"
    )
    print(table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
