"""What only the FastAGI executor has: the dialplan's own fallbacks.

Every call flow (reject, forward, sequential, simultaneous, greeting,
voicemail, the PSTN cap, outbound CallerID, hops) runs with both executors in
the call-flow modules (the ``call_path`` fixture, tests/support/call_paths.py).
Here: the engine not reachable when a call arrives (the dialplan answers 503,
not 603), the engine not reachable when a call ends (its hangup report
waits in the node's report file and becomes the CDR once the engine is back),
and a caller number that AGI()'s argument parsing could split.
The carrier at 127.0.0.8 lands in the bed's FastAGI dialplan; far ends are
127.0.0.3:5080.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.call_paths import agi_report_folder
from support.data import Seeder
from support.engine import EngineProcess
from support.sipp import Sipp

from callcontrol.agi.plan_push import PLANS_FAMILY
from callcontrol.domain.contract import app_variable
from callcontrol.domain.vocabulary import DestinationType, NumberState
from provisioning.asterisk_config import BENCH_AGI_CARRIER_IP

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
CARRIER = BENCH_AGI_CARRIER_IP
FAR_A = "127.0.0.3"
CALLER_NUMBER = "4915112345678"


def test_engine_not_running_gives_503_not_603(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    did = _forwarded_did(data)
    agi_engine.stop()
    try:
        _expect_code(did, "503", workdir)
    finally:
        agi_engine.start()
    assert data.cdrs_for(did) == []  # nobody decided the call: no engine, no CDR


def test_a_call_that_ends_while_the_engine_is_down_still_leaves_its_cdr(
    agi_engine: EngineProcess, asterisk: AsteriskSandbox, data: Seeder, workdir: Path
) -> None:
    """The call ends while no engine runs: its hangup report waits in the node's
    report file, and the engine, back, reads it and writes the CDR."""
    folder = agi_report_folder(asterisk.layout.root)
    did, far, caller = _answered_call(data, workdir, CALLER_NUMBER, duration_ms=4000)
    _wait_for_bridged_call(asterisk)
    agi_engine.stop()
    try:
        assert caller.wait(20).ok
        assert far.wait(15).ok
        reported = [
            line
            for path in folder.glob("callcontrol-agi-*.cdr")
            for line in path.read_text().splitlines()
            if f",{did}," in line
        ]
        assert len(reported) == 1, "the call's report waits on the node"
        assert data.cdrs_for(did) == []
    finally:
        agi_engine.start()
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered" and cdr["talk_ms"] >= 3000, cdr


def test_a_caller_number_with_a_comma_is_forwarded_and_recorded_whole(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    """A SIP URI's user part may hold a comma; AGI() splits its arguments on commas.
    Passed in the middle, "+49,5" once moved "5" into the hops argument: the call
    was refused as a forwarding loop (603). The party is now the last argument."""
    did, far, caller = _answered_call(data, workdir, "+49,5", duration_ms=1000)
    result = caller.wait(20)
    assert result.ok, result.describe()
    assert far.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered" and cdr["caller"] == "+49,5", cdr


def test_a_forwarded_call_runs_the_plan_the_engine_pushed_with_no_request(
    agi_engine: EngineProcess, asterisk: AsteriskSandbox, data: Seeder, workdir: Path
) -> None:
    """The DID's standing plan is in AstDB before the call: the dialplan runs it
    without asking (no decision is logged for the call), and the CDR still has
    the call's legs and its caller."""
    did = _forwarded_did(data)
    _wait_for_pushed_plan(asterisk, agi_engine, did, "CC_ACTION=forward")
    assert agi_engine.health()["plans_vouched"] is True
    assert "callcontrol_agi_plans_vouched 1.0" in agi_engine.metrics()
    far = Sipp(
        "far_answer.xml", FAR_A, 5080, workdir, variables={"answer_ms": "100"}, timeout_s=40
    ).start().wait_ready()  # fmt: skip
    caller = Sipp(
        "caller_answered.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, duration_ms=1000, timeout_s=30,
    ).run()  # fmt: skip
    assert caller.ok, caller.describe()
    assert far.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered" and cdr["caller"] == CALLER_NUMBER, cdr
    assert [leg["outcome"] for leg in cdr["legs"]] == ["answered"], cdr["legs"]
    decided = [e for e in _log_events(agi_engine, "call_decided") if e.get("call_id") == cdr["id"]]
    assert decided == [], "the engine was asked about a call its pushed plan covered"


def test_a_suspension_reaches_the_pushed_plan_within_a_second(
    agi_engine: EngineProcess, asterisk: AsteriskSandbox, data: Seeder, workdir: Path
) -> None:
    """Written straight into the database (as another process would): the
    change log's trigger sees it, the engine pushes the new plan (reject 21)."""
    did = _forwarded_did(data)
    _wait_for_pushed_plan(asterisk, agi_engine, did, "CC_ACTION=forward")
    changed = time.monotonic()
    data.set_state(did, NumberState.SUSPENDED)
    _wait_for_pushed_plan(asterisk, agi_engine, did, "CC_CAUSE=21,CC_PHASE=done,CC_ACTION=reject")
    assert time.monotonic() - changed < 1.5, "the change took longer than a second to arrive"
    _expect_code(did, "403", workdir)
    assert data.wait_for_cdr(did)["reject_reason"] == "suspended"


def test_a_killed_engine_plans_serve_for_the_lease_then_calls_get_503(
    agi_engine: EngineProcess, asterisk: AsteriskSandbox, data: Seeder, workdir: Path
) -> None:
    """kill -9: nobody withdraws the plans. Calls within the lease are still
    forwarded by them (their reports wait on the node); after it, the dialplan
    asks, nobody answers, 503. The engine back: the waiting report is a CDR."""
    did = _forwarded_did(data)
    _wait_for_pushed_plan(asterisk, agi_engine, did, "CC_ACTION=forward")
    agi_engine.kill()
    killed = time.monotonic()
    try:
        far = Sipp(
            "far_answer.xml", FAR_A, 5080, workdir, variables={"answer_ms": "100"},
            timeout_s=40,
        ).start().wait_ready()  # fmt: skip
        caller = Sipp(
            "caller_answered.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
            keys={"caller": CALLER_NUMBER}, duration_ms=500, timeout_s=30,
        ).run()  # fmt: skip
        assert caller.ok, f"forwarded {time.monotonic() - killed:.1f}s after the kill"
        assert far.wait(15).ok
        time.sleep(max(0.0, PLANS_LEASE_S + 1.5 - (time.monotonic() - killed)))
        _expect_code(did, "503", workdir)
    finally:
        agi_engine.start()
    cdr = data.wait_for_cdr(did)  # the forwarded one; the 503 was nobody's decision
    assert cdr["disposition"] == "answered", cdr


PLANS_LEASE_S = 5.0  # settings agi.plans_lease_s, the default


def _forwarded_did(data: Seeder) -> str:
    """A new customer's DID forwarded to the far end at FAR_A:5080."""
    return data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)]
    )


def _expect_code(did: str, code: str, workdir: Path) -> None:
    """A carrier's call to ``did`` gets the final ``code``, nothing else."""
    result = Sipp(
        "caller_expect_code.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, variables={"expected": code}, timeout_s=20,
    ).run()  # fmt: skip
    assert result.ok, result.describe()


def _wait_for_pushed_plan(
    asterisk: AsteriskSandbox, engine: EngineProcess, did: str, wanted: str, timeout_s: float = 5
) -> None:
    family = app_variable(PLANS_FAMILY, engine.env["CALLCONTROL_ARI__APP"])
    deadline = time.monotonic() + timeout_s
    value = ""
    while time.monotonic() < deadline:
        value = asterisk.cli(f"database get {family} {did}")
        if wanted in value:
            return
        time.sleep(0.05)
    raise AssertionError(f"no pushed plan with {wanted!r} for {did}: {value!r}")


def _log_events(engine: EngineProcess, name: str) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in engine.log_path.read_text(errors="replace").splitlines()
        if line.startswith("{") and f'"{name}"' in line
    ]


def _answered_call(
    data: Seeder, workdir: Path, caller_number: str, *, duration_ms: int
) -> tuple[str, Sipp, Sipp]:
    """A DID forwarded to a far end that answers, and a carrier's call to it from
    ``caller_number`` (started, not awaited): the DID, the far end, the caller."""
    did = _forwarded_did(data)
    far = Sipp(
        "far_answer.xml", FAR_A, 5080, workdir, variables={"answer_ms": "100"}, timeout_s=40
    ).start().wait_ready()  # fmt: skip
    caller = Sipp(
        "caller_answered.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": caller_number}, duration_ms=duration_ms, timeout_s=30,
    ).start()  # fmt: skip
    return did, far, caller


def _wait_for_bridged_call(asterisk: AsteriskSandbox, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = asterisk.cli("core show channels concise").splitlines()
        if sum("!Up!" in line for line in lines) >= 2:
            return
        time.sleep(0.1)
    raise AssertionError("the call was not answered")
