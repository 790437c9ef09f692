"""Load through real Asterisk: each engine case beside its dialplan-only twin.

    python -m bench.calls [--rates 50,100,200] [--seconds 10] [--db sqlite|postgresql]
                          [--cases reject,forward] [--paths twin,agi,engine]
                          [--talk-ms 100] [--json PATH] [--keep] [--ami]

Starts the Asterisk sandbox, a database (a SQLite file, or a throwaway
PostgreSQL from tests/support/postgres.py), the engine as a process
(``callcontrol serve``), seeds a suspended DID and an active DID forwarded to
a SIPp far end on 127.0.0.3:5080 (answers at once, hangs up after
``--talk-ms``), then for every rate runs four steps of ``--seconds`` each:

- reject / engine: caller 127.0.0.2 -> suspended DID -> Stasis -> 403 (cause 21);
- reject / twin:   caller 127.0.0.9 -> dialplan ``Hangup(21)`` -> 403;
- forward / engine: caller 127.0.0.2 -> active DID -> engine dials the far end;
- forward / twin:   caller 127.0.0.9 -> dialplan ``Dial()`` of the same far end;
- reject|forward / agi: caller 127.0.0.8 -> the FastAGI dialplan asks a second
  engine process (``calls.executor=agi``, 127.0.0.1:4573) -> native
  ``Hangup(21)`` / ``Dial()``, then the hangup handler's CDR report.

Per step it reports SIPp's counts and retransmissions (``-trace_stat``), the
time to the final response / answer (``-trace_rtt``, rtd 1: INVITE -> 403 or
200), the CPU seconds Asterisk and the engine used (``/proc/PID/stat``
deltas, from the step's start until the system is idle again), the engine's
RSS and the ARI events it received per call (``/metrics`` delta), and the CDRs
it wrote. Then it compares engine vs. twin: the clean rate (the highest rate
below which no step failed; FastAGI's also without a retransmission, against
the twin's by the same measure; "or more" when a path was clean even at the
highest rate tried, and then a share of the twin is only "at most") and the
p99 the engine adds at 200 calls/s.

Asterisk runs as deployed by default: AMI off (no ``manager.conf``; pjsip
reloads go over ARI). ``--ami`` turns it on, to measure what it costs: the
manager then formats AMI events from every channel message, a snapshot per
dialplan priority included, with or without a client connected.

Everything it starts it stops (by PID) and it leaves Asterisk stopped unless
Asterisk was already running when it began. Traffic stays on 127.0.0.0/8.
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
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sqlalchemy as sa  # noqa: E402
from support.asterisk import AsteriskSandbox, asterisk_sandbox, default_config  # noqa: E402
from support.call_paths import agi_report_folder, clear_agi_reports  # noqa: E402
from support.data import Seeder  # noqa: E402
from support.engine import EngineProcess, engine_env  # noqa: E402
from support.postgres import PostgresCluster  # noqa: E402

from callcontrol.db.engine import create_engine, upgrade  # noqa: E402
from callcontrol.domain.vocabulary import DestinationType, NumberState  # noqa: E402
from callcontrol.settings import DatabaseSettings  # noqa: E402
from provisioning.asterisk_config import BENCH_AGI_APP_SUFFIX  # noqa: E402

SCENARIOS = ROOT / "sipp-scenarios"
ASTERISK = "127.0.0.1:5060"
ENGINE_CARRIER = "127.0.0.2"
TWIN_CARRIER = "127.0.0.9"
AGI_CARRIER = "127.0.0.8"  # provisioning/asterisk_config.py BENCH_AGI_CARRIER_IP
CARRIER_OF_PATH = {"engine": ENGINE_CARRIER, "twin": TWIN_CARRIER, "agi": AGI_CARRIER}
FAR_END = ("127.0.0.3", 5080)
SUSPENDED_DID = "+4930777000001"
FORWARDED_DID = "+4930777000002"
TWIN_SERVICE = {"reject": "14930777000001", "forward": "24930777000002"}
ENGINE_SERVICE = {"reject": SUSPENDED_DID[1:], "forward": FORWARDED_DID[1:]}
CALLER_SCENARIO = {"reject": "bench_caller_reject.xml", "forward": "bench_caller_forward.xml"}
CASES = ("reject", "forward")
PATHS = ("twin", "agi", "engine")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLE_LIMIT_S = 30.0


# ---- /proc ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---- SIPp -------------------------------------------------------------------------


@dataclass
class SippStats:
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    retransmissions: int = 0
    response_ms: list[float] = field(default_factory=list)


def sipp_command(
    scenario: str,
    ip: str,
    port: int,
    folder: Path,
    *,
    remote: str | None = None,
    service: str | None = None,
    rate: int | None = None,
    calls: int | None = None,
    timeout_s: float | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    args = ["sipp", "-sf", str(SCENARIOS / scenario), "-i", ip, "-p", str(port), "-nostdin"]
    args += ["-trace_stat", "-stf", str(folder / "stat.csv"), "-fd", "1"]
    args += ["-trace_err", "-error_file", str(folder / "errors.log")]
    args += ["-recv_timeout", "10000", "-l", "100000"]
    if rate is not None:
        args += ["-r", str(rate), "-trace_rtt", "-rtt_freq", "1"]
    if calls is not None:
        args += ["-m", str(calls)]
    if timeout_s is not None:
        args += ["-timeout", f"{timeout_s}s", "-timeout_error"]
    if service is not None:
        args += ["-s", service]
    args += list(extra)
    if remote is not None:
        args.append(remote)
    return args


def read_stats(folder: Path) -> SippStats:
    stats = SippStats()
    rows = [line for line in _read(folder / "stat.csv").splitlines() if line.strip()]
    if len(rows) >= 2:
        values = dict(zip(rows[0].split(";"), rows[-1].split(";"), strict=False))
        stats.attempted = int(values.get("OutgoingCall(C)", 0) or 0)
        stats.succeeded = int(values.get("SuccessfulCall(C)", 0) or 0)
        stats.failed = int(values.get("FailedCall(C)", 0) or 0)
        stats.retransmissions = int(values.get("Retransmissions(C)", 0) or 0)
    for rtt in folder.glob("*_rtt.csv"):
        for line in _read(rtt).splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    stats.response_ms.append(float(parts[1]))
                except ValueError:
                    continue
    return stats


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def far_end(workdir: Path, talk_ms: int) -> Iterator[subprocess.Popen[bytes]]:
    folder = workdir / "far-end"
    folder.mkdir()
    text = (SCENARIOS / "bench_far_answer_bye.xml").read_text(encoding="utf-8")
    marker = '<recv request="INVITE" timeout="100" ontimeout="bye"/>'
    if marker not in text:
        raise RuntimeError("bench_far_answer_bye.xml changed; update bench.calls.far_end")
    scenario = folder / "bench_far_answer_bye.xml"
    scenario.write_text(text.replace(marker, marker.replace("100", str(max(1, talk_ms)))))
    command = sipp_command(str(scenario), *FAR_END, folder)
    with open(folder / "stdout.txt", "wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder
        )
    try:
        deadline = time.monotonic() + 5
        while not _udp_bound(*FAR_END):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"far end did not start: {_read(folder / 'stdout.txt')}")
            time.sleep(0.05)
        yield process
    finally:
        stop_process(process)


def _udp_bound(ip: str, port: int) -> bool:
    wanted = "".join(f"{int(part):02X}" for part in reversed(ip.split("."))) + f":{port:04X}"
    with open("/proc/net/udp", encoding="ascii") as table:
        next(table)
        return any(line.split()[1] == wanted for line in table)


# ---- the system under test ------------------------------------------------------


@dataclass
class Step:
    rate: int
    case: str
    path: str
    attempted: int
    succeeded: int
    failed: int
    retransmissions: int
    p50_ms: float | None
    p99_ms: float | None
    asterisk_cpu_s: float
    engine_cpu_s: float
    engine_ms_per_call: float
    engine_net_ms_per_call: float
    engine_rss_mb: float
    asterisk_rss_mb: float
    events_per_call: float
    cdrs_written: int

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.attempted > 0 and self.succeeded == self.attempted

    @property
    def quiet(self) -> bool:
        """Clean with not one retransmission (issue 16's measure)."""
        return self.clean and self.retransmissions == 0


@dataclass
class Rig:
    workdir: Path
    asterisk: AsteriskSandbox
    engine: EngineProcess
    db_url: str
    agi_engine: EngineProcess | None = None
    counter: int = 0
    engine_idle_cpu: float = 0.0
    """CPU seconds per second the engine uses with no call (timers, heartbeats)."""
    agi_idle_cpu: float = 0.0

    def measure_idle(self, seconds: float = 5.0) -> None:
        pid = self.engine.proc.pid if self.engine.proc else 0
        agi_pid = self.agi_engine.proc.pid if self.agi_engine and self.agi_engine.proc else 0
        began, cpu0 = time.monotonic(), cpu_seconds(pid)
        agi0 = cpu_seconds(agi_pid) if agi_pid else 0.0
        time.sleep(seconds)
        took = time.monotonic() - began
        self.engine_idle_cpu = (cpu_seconds(pid) - cpu0) / took
        self.agi_idle_cpu = (cpu_seconds(agi_pid) - agi0) / took if agi_pid else 0.0

    def metric(self, name: str) -> float:
        for line in self.engine.metrics().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def active_channels(self) -> int:
        match = re.search(r"(\d+) active channel", self.asterisk.cli("core show channels count"))
        return int(match.group(1)) if match else -1

    def settle(self) -> None:
        """Wait until Asterisk has no channel and the engine no call (bounded)."""
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while time.monotonic() < deadline:
            if self.active_channels() == 0 and self.metric("callcontrol_active_calls") == 0:
                return
            time.sleep(0.25)
        print("  (not idle after settling; hanging up what is left)", file=sys.stderr)
        self.asterisk.hangup_all()

    def cdr_count(self, did: str) -> int:
        async def count() -> int:
            engine = create_engine(DatabaseSettings(url=self.db_url), pooled=False)
            try:
                async with engine.connect() as conn:
                    value = await conn.scalar(
                        sa.text("SELECT count(*) FROM cdrs WHERE did = :did"), {"did": did}
                    )
                    return int(value or 0)
            finally:
                await engine.dispose()

        return asyncio.run(count())

    def run_step(self, rate: int, seconds: int, case: str, path: str) -> Step:
        self.counter += 1
        folder = self.workdir / f"{self.counter:02d}-{rate}-{case}-{path}"
        folder.mkdir()
        calls = rate * seconds
        carrier = CARRIER_OF_PATH[path]
        service = (TWIN_SERVICE if path == "twin" else ENGINE_SERVICE)[case]
        did = SUSPENDED_DID if case == "reject" else FORWARDED_DID
        command = sipp_command(
            CALLER_SCENARIO[case],
            carrier,
            5070,
            folder,
            remote=ASTERISK,
            service=service,
            rate=rate,
            calls=calls,
            timeout_s=seconds + 40,
        )
        process = self.agi_engine if path == "agi" else self.engine
        engine_pid = process.proc.pid if process is not None and process.proc else 0
        events0 = self.metric("callcontrol_ari_events_total")
        cdrs0 = self.cdr_count(did) if path != "twin" else 0
        ast0, eng0 = cpu_seconds(self.asterisk.pid), cpu_seconds(engine_pid)
        began = time.monotonic()
        with open(folder / "stdout.txt", "wb") as out:
            caller = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder
            )
        try:
            caller.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            stop_process(caller)
        self.settle()
        ast1, eng1 = cpu_seconds(self.asterisk.pid), cpu_seconds(engine_pid)
        idle_rate = {"engine": self.engine_idle_cpu, "agi": self.agi_idle_cpu}.get(path, 0.0)
        idle = idle_rate * (time.monotonic() - began)
        events = self.metric("callcontrol_ari_events_total") - events0
        cdrs = self.cdr_count(did) - cdrs0 if path != "twin" else 0
        stats = read_stats(folder)
        attempted = stats.attempted or calls
        return Step(
            rate=rate,
            case=case,
            path=path,
            attempted=attempted,
            succeeded=stats.succeeded,
            failed=stats.failed + max(0, attempted - stats.succeeded - stats.failed),
            retransmissions=stats.retransmissions,
            p50_ms=percentile(stats.response_ms, 50),
            p99_ms=percentile(stats.response_ms, 99),
            asterisk_cpu_s=round(ast1 - ast0, 2),
            engine_cpu_s=round(eng1 - eng0, 2),
            engine_ms_per_call=round((eng1 - eng0) * 1000 / attempted, 3),
            engine_net_ms_per_call=round(max(0.0, eng1 - eng0 - idle) * 1000 / attempted, 3),
            engine_rss_mb=round(rss_mb(engine_pid), 1),
            asterisk_rss_mb=round(rss_mb(self.asterisk.pid), 1),
            events_per_call=round(events / attempted, 2),
            cdrs_written=cdrs,
        )


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 1)


# ---- set-up ---------------------------------------------------------------------


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        asyncio.run(upgrade(DatabaseSettings(url=url)))
        yield url
        return
    cluster = PostgresCluster.start()
    try:
        cluster.create_database("bench")
        url = cluster.url("bench")
        asyncio.run(upgrade(DatabaseSettings(url=url)))
        yield url
    finally:
        cluster.stop()


def seed(url: str) -> None:
    seeder = Seeder(url)
    account = seeder.account(balance_minor=100_000)
    # Owed money: the engine's daily billing run (at start-up) would reactivate a
    # suspended number whose owner is in credit.
    debtor = seeder.account(balance_minor=-100)
    seeder.number(debtor, did=SUSPENDED_DID, state=NumberState.SUSPENDED)
    seeder.number(
        account,
        did=FORWARDED_DID,
        destinations=[(DestinationType.SIP_URI, f"sip:far@{FAR_END[0]}:{FAR_END[1]}", 20)],
    )


def engine_process(asterisk: AsteriskSandbox, db_url: str, workdir: Path) -> EngineProcess:
    env = engine_env(asterisk, db_url, spool=workdir / "spool.db")
    env["CALLCONTROL_LOG_LEVEL"] = "info"
    return EngineProcess(env=env, log_path=workdir / "engine.log")


def agi_engine_process(
    asterisk: AsteriskSandbox, db_url: str, workdir: Path, *, push_plans: bool = True
) -> EngineProcess:
    """The FastAGI executor's engine: its own ARI app name (it takes no Stasis call)."""
    process = engine_process(asterisk, db_url, workdir)
    process.env |= {
        "CALLCONTROL_CALLS__EXECUTOR": "agi",
        "CALLCONTROL_AGI__PUSH_PLANS": "true" if push_plans else "false",
        "CALLCONTROL_ARI__APP": asterisk.app + BENCH_AGI_APP_SUFFIX,
        "CALLCONTROL_SPOOL__PATH": str(workdir / "agi-spool.db"),
        "CALLCONTROL_AGI__CDR_FOLDER": str(agi_report_folder(asterisk.layout.root)),
    }
    clear_agi_reports(asterisk.layout.root)
    process.log_path = workdir / "agi-engine.log"
    return process


@contextmanager
def running_engine(process: EngineProcess) -> Iterator[EngineProcess]:
    process.start()
    try:
        yield process
    finally:
        process.stop()


# ---- report ---------------------------------------------------------------------

COLUMNS = (
    ("rate", "rate", "{}"),
    ("case", "case", "{}"),
    ("path", "path", "{}"),
    ("attempted", "calls", "{}"),
    ("succeeded", "ok", "{}"),
    ("failed", "fail", "{}"),
    ("retransmissions", "retr", "{}"),
    ("p50_ms", "p50 ms", "{}"),
    ("p99_ms", "p99 ms", "{}"),
    ("asterisk_cpu_s", "ast CPU s", "{:.2f}"),
    ("engine_cpu_s", "eng CPU s", "{:.2f}"),
    ("engine_ms_per_call", "eng ms/call", "{:.3f}"),
    ("engine_net_ms_per_call", "net ms/call", "{:.3f}"),
    ("engine_rss_mb", "eng RSS MB", "{:.1f}"),
    ("events_per_call", "ev/call", "{:.2f}"),
    ("cdrs_written", "CDRs", "{}"),
)


def table(steps: list[Step]) -> str:
    header = [title for _, title, _ in COLUMNS]
    rows = [
        [
            fmt.format(getattr(step, key)) if getattr(step, key) is not None else "-"
            for key, _, fmt in COLUMNS
        ]
        for step in steps
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class CleanLimit:
    """Up to which rate every step of a path was clean; ``open``: it was clean even at
    the highest rate tried, so its real limit is at least ``rate`` (raise ``--rates``)."""

    rate: int
    open: bool

    def __str__(self) -> str:
        more = " (or more: clean at the highest rate tried)" if self.open else ""
        return f"{self.rate}/s{more}"


def clean_limit(steps: list[Step], case: str, path: str, *, quiet: bool = False) -> CleanLimit:
    """The highest rate below which no step of ``path`` failed (``quiet``: nor retransmitted).

    Not simply the highest clean step: a path that failed at 450/s and passed
    again at 500/s (the machine quieter, or the step after an overload) is clean
    to 400/s only. A rate run more than once counts only if every run of it was clean.
    """
    mine = [s for s in steps if s.case == case and s.path == path]
    limit = 0
    for rate in sorted({s.rate for s in mine}):
        if not all(s.quiet if quiet else s.clean for s in mine if s.rate == rate):
            return CleanLimit(limit, open=False)
        limit = rate
    return CleanLimit(limit, open=bool(mine))


def share_of_twin(limit: CleanLimit, twin: CleanLimit) -> str:
    """``limit`` as a share of the twin's; "at most" while the twin's own limit is not known."""
    if not twin.rate:
        return "no share (the twin was not clean at any rate tried)"
    share = f"{limit.rate / twin.rate:.0%} of the twin"
    if twin.open and not limit.open:
        return f"at most {share}"
    if twin.open:
        return f"{share}, of the rates tried (both clean at the highest)"
    return share


def comparison(steps: list[Step], rates: list[int]) -> str:
    lines = []
    for case in CASES:
        engine, twin = clean_limit(steps, case, "engine"), clean_limit(steps, case, "twin")
        if any(s.case == case and s.path == "engine" for s in steps):
            lines.append(
                f"{case}: clean rate engine {engine}, twin {twin} -> "
                f"{share_of_twin(engine, twin)} (goal >= 75 %; only rates tried: {rates})"
            )
        agi_steps = [s for s in steps if s.case == case and s.path == "agi"]
        if agi_steps:
            agi = clean_limit(steps, case, "agi", quiet=True)
            twin_quiet = clean_limit(steps, case, "twin", quiet=True)
            lines.append(
                f"{case}: clean rate with 0 retransmissions agi {agi}, twin {twin_quiet} -> "
                f"{share_of_twin(agi, twin_quiet)} (goal >= 90 %)"
            )
            agi_at = {s.path: s for s in steps if s.case == case and s.rate == 200}
            if "agi" in agi_at and "twin" in agi_at:
                agi_p99, twin_p99 = agi_at["agi"].p99_ms, agi_at["twin"].p99_ms
                if agi_p99 is not None and twin_p99 is not None:
                    lines.append(
                        f"{case}: at 200 calls/s agi adds p99 {agi_p99 - twin_p99:+.1f} ms "
                        f"(goal <= 10 ms)"
                    )
            lines.append(
                f"{case}: agi engine CPU per call "
                f"{min(s.engine_net_ms_per_call for s in agi_steps):.3f}-"
                f"{max(s.engine_net_ms_per_call for s in agi_steps):.3f} ms net of idle "
                f"(goal <= 1 ms)"
            )
        at = {s.path: s for s in steps if s.case == case and s.rate == 200}
        engine_p99 = at["engine"].p99_ms if "engine" in at else None
        twin_p99 = at["twin"].p99_ms if "twin" in at else None
        if engine_p99 is not None and twin_p99 is not None:
            added = engine_p99 - twin_p99
            p50 = (at["engine"].p50_ms or 0) - (at["twin"].p50_ms or 0)
            lines.append(
                f"{case}: at 200 calls/s the engine adds p50 {p50:+.1f} ms, "
                f"p99 {added:+.1f} ms (goal <= 10 ms)"
            )
        engine_steps = [s for s in steps if s.case == case and s.path == "engine"]
        if engine_steps:
            worst = max(s.engine_ms_per_call for s in engine_steps)
            best = min(s.engine_ms_per_call for s in engine_steps)
            lines.append(
                f"{case}: engine CPU per call {best:.3f}-{worst:.3f} ms across rates "
                f"(goal <= 0.5 ms)"
            )
    return "\n".join(lines)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}"


# ---- main -----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.calls", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rates", default="50,100,200", help="calls/s, comma-separated")
    parser.add_argument("--seconds", type=int, default=10, help="length of each step")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--talk-ms", type=int, default=100, help="far end: answer, then BYE after")
    parser.add_argument("--cases", default="reject,forward")
    parser.add_argument("--paths", default="twin,engine", help="any of twin,agi,engine")
    parser.add_argument("--json", type=Path, default=None, help="also write the steps as JSON")
    parser.add_argument(
        "--warmup-s", type=int, default=3, help="uncounted calls at 50/s per engine first (0: none)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (SIPp files, logs)"
    )
    parser.add_argument(
        "--ami", action="store_true", help="Asterisk with AMI enabled (default: off, as deployed)"
    )
    parser.add_argument(
        "--agi-asks", action="store_true",
        help="the agi path without pushed plans: every call asks the engine (agi.push_plans off)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    cases = [c for c in args.cases.split(",") if c in CASES]
    paths = [p for p in PATHS if p in args.paths.split(",")]
    if not shutil.which("sipp"):
        print("bench: sipp not found (Debian package sip-tester)", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="callcontrol-bench-"))
    print(f"bench: work folder {workdir}; {machine()}", flush=True)
    steps: list[Step] = []
    rig_idle = [0.0]
    began = time.monotonic()
    try:
        with ExitStack() as stack:
            db_url = stack.enter_context(database(args.db, workdir))
            seed(db_url)
            config = replace(default_config(), ami=args.ami)
            sandbox = stack.enter_context(asterisk_sandbox(config))
            ami = "on" if args.ami else "off"
            print(
                f"bench: Asterisk {sandbox.version} pid {sandbox.pid}; AMI {ami}; db {args.db}"
                f"; agi {'asks every call' if args.agi_asks else 'pushes plans'}",
                flush=True,
            )
            engine = stack.enter_context(running_engine(engine_process(sandbox, db_url, workdir)))
            agi = None
            if "agi" in paths:
                agi = stack.enter_context(
                    running_engine(
                        agi_engine_process(sandbox, db_url, workdir, push_plans=not args.agi_asks)
                    )
                )
            stack.enter_context(far_end(workdir, args.talk_ms))
            rig = Rig(workdir, sandbox, engine, db_url, agi_engine=agi)
            rig.settle()
            rig.measure_idle()
            rig_idle[0] = rig.engine_idle_cpu
            print(f"bench: engine idle CPU {rig.engine_idle_cpu * 100:.1f} % of a core", flush=True)
            if args.warmup_s:
                # Not counted: an engine's first calls pay for lazy imports, compiled
                # statements and new connections, which the first rate would carry alone.
                for case in cases:
                    for path in paths:
                        if path != "twin":
                            rig.run_step(50, args.warmup_s, case, path)
                print(f"bench: warmed up ({args.warmup_s} s at 50/s per path)", flush=True)
            for rate in rates:
                for case in cases:
                    for path in paths:
                        step = rig.run_step(rate, args.seconds, case, path)
                        steps.append(step)
                        print(
                            f"  {rate}/s {case:7} {path:6}: {step.succeeded}/{step.attempted} ok, "
                            f"{step.failed} failed, {step.retransmissions} retr, p50 {step.p50_ms} "
                            f"p99 {step.p99_ms} ms, engine {step.engine_ms_per_call} ms/call, "
                            f"{step.events_per_call} ev/call",
                            flush=True,
                        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    idle = steps and rig_idle[0]
    print(
        f"machine: {machine()}; db {args.db}; AMI {'on' if args.ami else 'off'}; "
        f"{args.seconds} s per step; "
        f"far end talks {args.talk_ms} ms; engine idle {idle * 100:.1f} % of a core; "
        f"run took {time.monotonic() - began:.0f} s"
    )
    print(table(steps))
    print()
    print(comparison(steps, rates))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(s) for s in steps], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
