"""Engine CPU per call without Asterisk: the real engine against a scripted fake ARI.

    python -m bench.cpu [--cases reject,forward] [--rate 200] [--calls 2000]
                        [--repeat 3] [--talk-ms 100] [--baseline REV] [--py-spy FILE]

Starts the engine as in production (``callcontrol serve``, SQLite, JSON logs at
level info) against ``bench.fake_asterisk`` - a fake ARI in its own process
that answers the engine's REST requests and sends the events the real Asterisk
sends (recorded JSON) - seeds the same two DIDs as ``bench.calls`` and runs
``--calls`` calls per case at ``--rate`` calls/s, ``--repeat`` times. Per run it
reports the engine's CPU (user + system, ``/proc/PID/stat``, from the first
call until the engine holds no call, minus its idle CPU), the REST requests
and events per call as the fake counted them, and any request the fake
refused. Nothing else runs on the engine's core but the fake, so the figure
is repeatable to a few per cent on a quiet machine (each run prints its
spread); it is not a substitute for ``bench.calls``, which puts Asterisk and
SIPp on the same cores.

``--baseline REV`` also measures the engine of a git revision (exported with
``git archive`` into the work folder, run with the same virtualenv) or of
another source folder, taking turns with this checkout run by run, so both
see the same machine; the table then shows both and their ratio.

``--py-spy FILE`` samples the engine with py-spy during the runs (slower;
do not read CPU figures from such a run) and writes a speedscope profile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.engine import EngineProcess, free_port  # noqa: E402

from bench.calls import (  # noqa: E402
    FORWARDED_DID,
    SUSPENDED_DID,
    cpu_seconds,
    machine,
    rss_mb,
    seed,
)

DIDS = {"reject": SUSPENDED_DID[1:], "forward": FORWARDED_DID[1:]}
CASES = ("reject", "forward")
SETTLE_LIMIT_S = 30.0


@dataclass
class Run:
    case: str
    rate: int
    calls: int
    finished: int
    engine_cpu_s: float
    ms_per_call: float
    requests_per_call: float
    events_per_call: float
    errors: dict[str, int]
    requests: dict[str, int]
    rss_mb: float
    mega_instructions_per_call: float | None = None
    """Under ``--callgrind``: millions of instructions the engine executed per call."""
    variant: str = "this"


class FakeAsteriskProcess:
    def __init__(self, workdir: Path, talk_ms: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (workdir / "fake-asterisk.log").open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.fake_asterisk"),
                *("--port", str(self.port), "--talk-ms", str(talk_ms)),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.status()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("fake Asterisk did not start") from None
                time.sleep(0.05)

    def status(self) -> dict[str, object]:
        with urllib.request.urlopen(self.url + "/_bench/status", timeout=2) as response:
            return dict(json.load(response))

    def run(self, did: str, rate: int, calls: int) -> None:
        query = f"?did={did}&rate={rate}&calls={calls}"
        request = urllib.request.Request(self.url + "/_bench/run" + query, method="POST")
        with urllib.request.urlopen(request, timeout=2):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Engine(EngineProcess):
    """``callcontrol serve`` as in the e2e tests, optionally under a wrapper (valgrind)."""

    def __init__(self, *, env: dict[str, str], log_path: Path, wrapper: list[str]) -> None:
        super().__init__(env=env, log_path=log_path)
        self.wrapper = wrapper

    def start(self, timeout_s: float = 20.0) -> None:
        if self.wrapper:
            timeout_s = max(timeout_s, 180.0)  # valgrind: imports take a minute
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.wrapper, sys.executable, "-m", "callcontrol.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.health().get("ari_connected"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"engine not connected after {timeout_s}s:\n{self.log_tail()}")


class Callgrind:
    """Instruction counts of the engine under valgrind's callgrind, per measured run.

    Instrumentation is off while the engine starts and warms up (valgrind still
    runs it, a few times slower) and is switched on for the measured runs;
    each run is zeroed before and dumped after, so its count is its own.
    """

    def __init__(self, workdir: Path) -> None:
        self.out = workdir / "callgrind.out"
        self.wrapper = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
            f"--callgrind-out-file={self.out}.%p",
        ]

    def start_run(self, pid: int) -> None:
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True)
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)

    def end_run(self, pid: int) -> int:
        """Instructions executed since `start_run` (all threads)."""
        before = set(self.out.parent.glob(f"{self.out.name}.{pid}*"))
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = set(self.out.parent.glob(f"{self.out.name}.{pid}*")) - before
            totals = [_callgrind_total(path) for path in new]
            if new and all(total is not None for total in totals):
                return sum(total or 0 for total in totals)
            time.sleep(0.2)
        raise RuntimeError("callgrind wrote no dump")


def _callgrind_total(path: Path) -> int | None:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    return None


def engine_process(
    fake: FakeAsteriskProcess, db_url: str, workdir: Path, wrapper: list[str], root: Path
) -> Engine:
    media = workdir / "media"
    media.mkdir(exist_ok=True)
    extra = {
        # Every call is measured: no shedding, however slow the shared machine is
        # (only for engines that have admission control: older ones refuse the settings).
        "CALLCONTROL_CALLS__MAX_ARI_LATENCY_MS": "600000",
        "CALLCONTROL_CALLS__MAX_ARI_IN_FLIGHT": "100000",
    }
    if not (root / "callcontrol" / "engine" / "admission.py").exists():
        extra = {}
    # Settings an older engine refuses (extra="forbid"): only for engines that have them.
    if (root / "callcontrol" / "domain" / "destinations.py").exists():
        extra["CALLCONTROL_FORWARDING__ALLOWED_NETWORKS"] = '["127.0.0.0/8"]'  # far ends
    if (root / "callcontrol" / "repositories" / "spool.py").exists():
        extra["CALLCONTROL_SPOOL__PATH"] = str(workdir / f"spool-{root.name}.db")
    return Engine(
        wrapper=wrapper,
        env=extra
        | {
            "CALLCONTROL_ENVIRONMENT": "test",
            "CALLCONTROL_DATABASE__URL": db_url,
            "CALLCONTROL_ARI__URL": fake.url,
            "CALLCONTROL_ARI__USERNAME": "callcontrol",
            "CALLCONTROL_ARI__PASSWORD": "callcontrol",
            "CALLCONTROL_ARI__APP": "callcontrol",
            "CALLCONTROL_MEDIA__ROOT": str(media),
            "CALLCONTROL_LOG_FORMAT": "json",
            "CALLCONTROL_LOG_LEVEL": "info",
        },
        log_path=workdir / "engine.log",
    )


def active_calls(engine: EngineProcess) -> float:
    for line in engine.metrics().splitlines():
        if line.startswith("callcontrol_active_calls "):
            return float(line.split()[1])
    return 0.0


def run_case(
    fake: FakeAsteriskProcess,
    engine: EngineProcess,
    pid: int,
    idle_cpu: float,
    case: str,
    rate: int,
    calls: int,
    callgrind: Callgrind | None = None,
) -> Run:
    if callgrind is not None:
        callgrind.start_run(pid)
    cpu0, began = cpu_seconds(pid), time.monotonic()
    fake.run(DIDS[case], rate, calls)
    deadline = began + calls / rate + SETTLE_LIMIT_S
    status = fake.status()
    while time.monotonic() < deadline:
        status = fake.status()
        if status["finished"] == calls and status["started"] == calls:
            break
        time.sleep(0.05)
    while time.monotonic() < deadline and active_calls(engine) > 0:
        time.sleep(0.05)
    cpu = cpu_seconds(pid) - cpu0 - idle_cpu * (time.monotonic() - began)
    instructions = callgrind.end_run(pid) if callgrind is not None else None
    status = fake.status()
    requests = dict(status["requests"])  # type: ignore[call-overload]
    events = dict(status["events"])  # type: ignore[call-overload]
    return Run(
        case=case,
        rate=rate,
        calls=calls,
        finished=int(status["finished"]),  # type: ignore[call-overload]
        engine_cpu_s=round(cpu, 3),
        ms_per_call=round(cpu * 1000 / calls, 3),
        requests_per_call=round(sum(requests.values()) / calls, 2),
        events_per_call=round(sum(events.values()) / calls, 2),
        errors=dict(status["errors"]),  # type: ignore[call-overload]
        requests=requests,
        rss_mb=round(rss_mb(pid), 1),
        mega_instructions_per_call=(
            round(instructions / calls / 1e6, 3) if instructions is not None else None
        ),
    )


@dataclass
class Variant:
    name: str
    root: Path
    """The source tree whose ``callcontrol`` package the engine runs."""


def variant_database(variant: Variant, path: Path) -> str:
    """A SQLite file at the schema of ``variant``'s migrations (``callcontrol db upgrade``
    run from its source tree)."""
    url = f"sqlite+aiosqlite:///{path}"
    subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "db", "upgrade"],
        cwd=variant.root, check=True, stdout=subprocess.DEVNULL,
        env={**os.environ, "CALLCONTROL_DATABASE__URL": url, "PYTHONPATH": str(variant.root)},
    )  # fmt: skip
    return url


def export_revision(rev: str, workdir: Path) -> Path:
    """``git archive REV`` of this repository into the work folder."""
    target = workdir / f"rev-{rev.replace('/', '_')}"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Spawn the engine from `path`: ``python -m callcontrol.cli`` imports it from there."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def measure_variant(
    variant: Variant,
    fake: FakeAsteriskProcess,
    db_url: str,
    workdir: Path,
    args: argparse.Namespace,
    cases: list[str],
) -> list[Run]:
    callgrind = Callgrind(workdir) if args.callgrind else None
    engine = engine_process(
        fake, db_url, workdir, callgrind.wrapper if callgrind else [], variant.root
    )
    with working_directory(variant.root):
        engine.start()
    spy: subprocess.Popen[bytes] | None = None
    runs: list[Run] = []
    try:
        pid = engine.proc.pid if engine.proc else 0
        for case in cases:  # warm-up: imports, caches, connections
            run_case(fake, engine, pid, 0.0, case, args.rate, args.warmup)
        began, cpu0 = time.monotonic(), cpu_seconds(pid)
        time.sleep(2)
        idle = (cpu_seconds(pid) - cpu0) / (time.monotonic() - began)
        if args.py_spy is not None:
            spy = subprocess.Popen(
                [
                    *("py-spy", "record", "--pid", str(pid), "--format", "speedscope"),
                    *("--rate", "250", "--output", f"{args.py_spy}.{variant.name}"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        for case in cases:
            run = run_case(fake, engine, pid, idle, case, args.rate, args.calls, callgrind)
            run.variant = variant.name
            runs.append(run)
            counted = run.mega_instructions_per_call
            print(
                f"  {variant.name:8} {case:7} {run.finished}/{run.calls} at {run.rate}/s: "
                f"{run.ms_per_call:.3f} ms CPU/call (idle {idle * 100:.1f} %), "
                + (f"{counted:.3f} M instructions/call, " if counted is not None else "")
                + f"{run.requests_per_call} req/call, {run.events_per_call} ev/call"
                + (f", refused: {run.errors}" if run.errors else ""),
                flush=True,
            )
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        engine.stop()
    return runs


def report(runs: list[Run], variants: list[Variant], cases: list[str], rate: int) -> None:
    counted = any(r.mega_instructions_per_call is not None for r in runs)
    print(
        "| case | engine | calls/s | runs | CPU ms/call: median (min-max) |"
        + (" M instr/call: median (min-max) |" if counted else "")
        + " req/call | ev/call |"
    )
    print("|---|---|---|---|---|" + ("---|" if counted else "") + "---|---|")
    medians: dict[tuple[str, str], tuple[float, float | None]] = {}
    for case in cases:
        for variant in variants:
            mine = [r for r in runs if r.case == case and r.variant == variant.name]
            if not mine:
                continue
            per_call = [r.ms_per_call for r in mine]
            instr = [r.mega_instructions_per_call or 0.0 for r in mine]
            medians[case, variant.name] = (
                statistics.median(per_call),
                statistics.median(instr) if counted else None,
            )
            print(
                f"| {case} | {variant.name} | {rate} | {len(mine)} | "
                f"{statistics.median(per_call):.3f} ({min(per_call):.3f}-{max(per_call):.3f}) | "
                + (
                    f"{statistics.median(instr):.3f} ({min(instr):.3f}-{max(instr):.3f}) | "
                    if counted
                    else ""
                )
                + f"{mine[0].requests_per_call} | {mine[0].events_per_call} |"
            )
    if len(variants) == 2:
        base, this = variants
        for case in cases:
            if (case, base.name) in medians and (case, this.name) in medians:
                (cpu_base, instr_base), (cpu_this, instr_this) = (
                    medians[case, base.name],
                    medians[case, this.name],
                )
                line = f"{case}: {this.name} uses {cpu_this / cpu_base:.0%} of {base.name}'s CPU"
                if instr_base and instr_this is not None:
                    line += f" and {instr_this / instr_base:.0%} of its instructions"
                print(line + " per call")
    for case in cases:
        mine = [r for r in runs if r.case == case]
        for variant in variants:
            last = [r for r in mine if r.variant == variant.name][-1:]
            if last:
                print(f"{case} / {variant.name} requests per run: {last[0].requests}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="reject,forward")
    parser.add_argument("--rate", type=int, default=200, help="calls/s")
    parser.add_argument("--calls", type=int, default=2000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case and engine")
    parser.add_argument("--talk-ms", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=200, help="calls before measuring")
    parser.add_argument(
        "--baseline", default=None, help="a git revision (or a source folder) to compare with"
    )
    parser.add_argument("--py-spy", type=Path, default=None, help="write speedscope profiles")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="run the engine under valgrind and count its instructions per call "
        "(slow: use a low --rate)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the runs as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c in CASES]
    workdir = Path(tempfile.mkdtemp(prefix="callcontrol-bench-cpu-"))
    print(f"bench.cpu: work folder {workdir}; {machine()}", flush=True)
    variants = [Variant("this", ROOT)]
    if args.baseline and Path(args.baseline).is_dir():
        variants.insert(0, Variant(Path(args.baseline).name, Path(args.baseline).resolve()))
    elif args.baseline:
        variants.insert(0, Variant(args.baseline, export_revision(args.baseline, workdir)))
    runs: list[Run] = []
    fake: FakeAsteriskProcess | None = None
    try:
        # A database per variant, migrated by the variant's own code: an engine
        # refuses a schema newer than its migrations (a baseline before 0005 would).
        urls = {
            v.name: variant_database(v, workdir / f"bench-{i}.db") for i, v in enumerate(variants)
        }
        for url in urls.values():
            seed(url)
        fake = FakeAsteriskProcess(workdir, args.talk_ms)
        for _ in range(args.repeat):
            for variant in variants:
                runs += measure_variant(variant, fake, urls[variant.name], workdir, args, cases)
    finally:
        if fake is not None:
            fake.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at the end")
    report(runs, variants, cases, args.rate)
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in runs], indent=1))
    failed = [r for r in runs if r.finished != r.calls or r.errors]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
