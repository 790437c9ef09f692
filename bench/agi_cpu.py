"""The FastAGI executor's CPU per call without Asterisk: the real engine
(``callcontrol serve``, ``calls.executor=agi``, SQLite, JSON logs) against a
scripted fake Asterisk that speaks FastAGI.

    python -m bench.agi_cpu [--cases reject,forward] [--rate 200] [--calls 2000] [--repeat 3]

The engine connects ARI to ``bench.fake_asterisk`` (it takes no Stasis call;
the connection only makes it "active"). Per call the fake opens the
``inbound`` request (header, then answers every command with
``200 result=1`` until the engine closes), then appends the hangup handler's
report line for an answered (forward) or rejected call to the report file,
as Asterisk does, so reading it and the CDR write through the spool are in
the figure. It
reports the engine's CPU per call (``/proc/PID/stat`` from the first call
until every CDR is in the database, minus the engine's idle CPU) and the time
the decision took as the fake saw it (connect -> connection closed: what the
caller's time to answer grows by), p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.engine import free_port  # noqa: E402

from bench.calls import (  # noqa: E402
    FORWARDED_DID,
    SUSPENDED_DID,
    Rig,
    cpu_seconds,
    database,
    machine,
    percentile,
    seed,
)
from bench.cpu import Callgrind, FakeAsteriskProcess, engine_process  # noqa: E402
from callcontrol.agi.plans import HANGUP_ARGS  # noqa: E402
from callcontrol.agi.reports import PREFIX, SUFFIX  # noqa: E402

DIDS = {"reject": SUSPENDED_DID[1:], "forward": FORWARDED_DID[1:]}


def header(script: str, uniqueid: str, args: tuple[str, ...]) -> bytes:
    lines = [
        "agi_network: yes", f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1/{script}", "agi_channel: PJSIP/callcontrol-carrier-1",
        "agi_language: en", "agi_type: PJSIP", f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.10.1", "agi_callerid: 4915112345678", "agi_calleridname: unknown",
        "agi_context: callcontrol-agi-decide", "agi_extension: s", "agi_priority: 1",
    ]  # fmt: skip
    lines += [f"agi_arg_{i}: {value}" for i, value in enumerate(args, start=1)]
    return ("\n".join(lines) + "\n\n").encode()


async def request(port: int, data: bytes) -> float:
    """One AGI request as Asterisk makes it; seconds until the engine closed it."""
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    while await reader.readline():
        writer.write(b"200 result=1\n")
    writer.close()
    return time.perf_counter() - began


def hangup_args(case: str, did: str) -> tuple[str, ...]:
    now = time.time()
    values = dict.fromkeys(HANGUP_ARGS, "")
    values |= {"CC_PHASE": "done", "CC_NOW": f"{now:.3f}", "CC_START": f"{now - 0.2:.3f}"}
    values |= {
        "CC_DIRECTION": "inbound",
        "CC_NUMBER": did,
        "CC_PLAN": "=",
        "CC_PARTY": "4915112345678",
    }
    if case == "forward":
        values |= {
            "CC_STEP": "1", "CC_T1": f"{now - 0.15:.3f}", "DIALSTATUS": "ANSWER",
            "DIALEDTIME_MS": "150", "ANSWEREDTIME_MS": "100", "HANGUPCAUSE": "16",
        }  # fmt: skip
    return tuple(values[name] for name in HANGUP_ARGS)


def report(folder: Path, uniqueid: str, fields: tuple[str, ...]) -> None:
    """The hangup handler's ``FILE()`` append: open, one line, close."""
    name = f"{PREFIX}{time.strftime('%Y%m%d-%H%M')}{SUFFIX}"
    with (folder / name).open("a") as handle:
        handle.write(",".join((uniqueid, *fields)) + "\n")


async def one_call(port: int, folder: Path, case: str, uniqueid: str) -> float:
    did = DIDS[case]
    decided = await request(port, header("inbound", uniqueid, (did, "", "", "4915112345678")))
    report(folder, uniqueid, hangup_args(case, did))
    return decided


async def load(port: int, folder: Path, case: str, rate: int, calls: int, run: int) -> list[float]:
    tasks = []
    began = time.monotonic()
    for n in range(calls):
        await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
        uniqueid = f"{case}{run}{n:06d}.{n}"
        tasks.append(asyncio.create_task(one_call(port, folder, case, uniqueid)))
    return list(await asyncio.gather(*tasks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agi_cpu")
    parser.add_argument("--cases", default="reject,forward")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--callgrind", action="store_true", help="instructions per call under valgrind (slow)"
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="callcontrol-agi-cpu-"))
    print(f"bench.agi_cpu: {machine()}; work folder {workdir}", flush=True)
    with database("sqlite", workdir) as db_url:
        seed(db_url)
        fake = FakeAsteriskProcess(workdir, talk_ms=100)
        port = free_port()
        callgrind = Callgrind(workdir) if args.callgrind else None
        engine = engine_process(fake, db_url, workdir, callgrind.wrapper if callgrind else [], ROOT)
        reports = workdir / "asterisk-log"
        reports.mkdir()
        engine.env |= {
            "CALLCONTROL_CALLS__EXECUTOR": "agi", "CALLCONTROL_AGI__PORT": str(port),
            "CALLCONTROL_AGI__CDR_FOLDER": str(reports),
            # The asking path is what this measures: a request per call, no pushed plan.
            "CALLCONTROL_AGI__PUSH_PLANS": "false",
        }  # fmt: skip
        try:
            engine.start()
            assert engine.proc is not None
            pid = engine.proc.pid
            cdrs = Rig(workdir, None, engine, db_url)  # type: ignore[arg-type]
            asyncio.run(load(port, reports, "reject", 50, 100, 99))  # warm-up
            time.sleep(2)
            t0, cpu0 = time.monotonic(), cpu_seconds(pid)
            time.sleep(3)
            idle = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            print(f"engine idle: {idle * 100:.1f} % of a core", flush=True)
            for case in args.cases.split(","):
                did = "+" + DIDS[case]
                for run in range(args.repeat):
                    before = cdrs.cdr_count(did)
                    if callgrind is not None:
                        callgrind.start_run(pid)
                    cpu0, began = cpu_seconds(pid), time.monotonic()
                    times = asyncio.run(load(port, reports, case, args.rate, args.calls, run))
                    deadline = time.monotonic() + 30
                    while cdrs.cdr_count(did) - before < args.calls:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.1)
                    took = time.monotonic() - began
                    cpu = cpu_seconds(pid) - cpu0 - idle * took
                    written = cdrs.cdr_count(did) - before
                    if callgrind is not None:
                        mega = callgrind.end_run(pid) / 1e6 / args.calls
                        print(f"{case:7} run {run + 1}: {mega:.2f} M instructions per call")
                    ms = [t * 1000 for t in times]
                    print(
                        f"{case:7} run {run + 1}: {args.calls} calls at {args.rate}/s, "
                        f"{written} CDRs, engine {cpu * 1000 / args.calls:.3f} ms CPU/call "
                        f"(net of idle), decision p50 {statistics.median(ms):.2f} ms "
                        f"p99 {percentile(ms, 99)} ms",
                        flush=True,
                    )
        finally:
            engine.stop()
            fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
