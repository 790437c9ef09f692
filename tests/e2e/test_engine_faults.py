"""Faults a user meets, through real Asterisk and SIPp: calls survive the engine.

- the engine SIGKILLed with live calls and restarted at once (either
  executor): every answered call goes on talking (re-adopted by the ARI
  engine; in Dial() on the FastAGI path) and leaves exactly one CDR (and one
  charge for a PSTN leg) when its far end hangs up; new calls succeed as soon
  as the engine is back; nothing is left in Asterisk;
- a second engine with the same app name stands by instead of taking the app;
  when the first is killed, it takes the calls over;
- the ARI socket cut under the engine: not one call fails;
- calls beyond the engine's capacity get 503 at once: beyond its calls in
  progress from the engine, beyond its call rate from the dialplan before Stasis.

Each test places a small load (about 20 live calls, held 9 s by the far ends,
``far_answer_hold.xml``: a BYE from Asterisk before that fails the far end's
call, so its failed count is the number of answered calls dropped).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.call_paths import CallPath
from support.data import Seeder
from support.engine import EngineProcess
from support.fault_calls import caller_scenario, parse_log
from support.faults import AriProxy
from support.sipp import Sipp

from callcontrol.domain.contract import app_variable
from callcontrol.domain.vocabulary import DestinationType

pytestmark = pytest.mark.e2e

CARRIER, PROBE, FAR_A, PSTN = "127.0.0.2", "127.0.0.7", "127.0.0.3", "127.0.0.5"
CALLS, RATE = 10, 5.0  # per far end: 10 calls placed in 2 s, each held 9 s
RATE_PER_MINUTE = 6


def ari_get(asterisk: AsteriskSandbox, path: str) -> object:
    request = urllib.request.Request(asterisk.ari_base_url + path)
    token = f"{asterisk.ari_username}:{asterisk.ari_password}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def asterisk_global(asterisk: AsteriskSandbox, name: str) -> str:
    value = ari_get(asterisk, f"/asterisk/variable?variable={name}")
    assert isinstance(value, dict)
    return str(value.get("value", ""))


def shed_by_dialplan(asterisk: AsteriskSandbox, app: str | None = None) -> int:
    """Calls the dialplan turned away before the engine (Stasis or FastAGI) for
    ``app`` (default: the bed's ARI app), since Asterisk started."""
    name = app_variable("CALLCONTROL_SHEDDED_", app or asterisk.app)
    return int(asterisk_global(asterisk, name) or 0)


def our_bridges(asterisk: AsteriskSandbox) -> list[str]:
    bridges = ari_get(asterisk, "/bridges")
    assert isinstance(bridges, list)
    return [b["id"] for b in bridges if b.get("name") == asterisk.app]


def wait_bridged(asterisk: AsteriskSandbox, count: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(our_bridges(asterisk)) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} calls bridged: {our_bridges(asterisk)}")


class Load:
    """Callers to two DIDs (one forwarded to a SIP URI, one to a PSTN number)."""

    def __init__(self, data: Seeder, workdir: Path, *, carrier: str = CARRIER) -> None:
        account = data.account(balance_minor=100_000)
        data.rate("49", RATE_PER_MINUTE)
        self.account = account
        self.sip_did = data.number(
            account, destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 20)]
        )
        self.pstn_did = data.number(
            account, destinations=[(DestinationType.PSTN, "+4915112345678", 20)]
        )
        self.far_ends = [
            Sipp("far_answer_hold.xml", FAR_A, 5080, workdir, calls=CALLS, timeout_s=60),
            Sipp("far_answer_hold.xml", PSTN, 5060, workdir, calls=CALLS, timeout_s=60),
        ]
        self.callers = [
            Sipp(
                "bench_caller_forward.xml",
                carrier,
                port,
                workdir,
                remote="127.0.0.1:5060",
                service=did.lstrip("+"),
                calls=CALLS,
                rate=RATE,
                timeout_s=60,
                media_port=media,
            )
            for did, port, media in ((self.sip_did, 5070, 6000), (self.pstn_did, 5072, 6100))
        ]

    def start(self) -> None:
        for far in self.far_ends:
            far.start().wait_ready()
        for caller in self.callers:
            caller.start()

    def finish(self) -> None:
        """Every call answered and ended by its far end: none dropped, none failed."""
        for caller in self.callers:
            result = caller.wait(60)
            assert result.successful == CALLS and result.failed == 0, result.describe()
        for far in self.far_ends:
            result = far.wait(30)
            assert result.failed == 0, f"answered calls dropped:\n{result.describe()}"
            assert result.successful == CALLS, result.describe()

    def stop(self) -> None:
        for process in (*self.callers, *self.far_ends):
            process.stop()


@pytest.fixture
def load(data: Seeder, workdir: Path) -> Iterator[Load]:
    placed = Load(data, workdir)
    yield placed
    placed.stop()


def assert_one_answered_cdr_per_call(data: Seeder, load: Load) -> None:
    deadline = time.monotonic() + 20
    while True:
        sip, pstn = data.cdrs_for(load.sip_did), data.cdrs_for(load.pstn_did)
        if len(sip) + len(pstn) >= 2 * CALLS or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for cdrs in (sip, pstn):
        assert len(cdrs) == CALLS, [c["disposition"] for c in cdrs]
        assert {c["disposition"] for c in cdrs} == {"answered"}, [c["reject_reason"] for c in cdrs]
        assert all(c["talk_ms"] >= 8_000 for c in cdrs), [c["talk_ms"] for c in cdrs]
    # Each PSTN call charged once, for what it talked (about 9-10 s at 6 per minute: 1).
    charges = [e for e in data.ledger_entries(load.account) if e[2] and e[2].startswith("call:")]
    assert len(charges) == CALLS, charges
    assert len({key for _, _, key in charges}) == CALLS


def probe_call(data: Seeder, workdir: Path, caller: str = PROBE) -> None:
    """One new call, placed now, is answered (first try, no retry); from ``caller``
    (the bed routes the prober's address to Stasis, 127.0.0.8 to FastAGI)."""
    did = data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:bob@{FAR_A}:5082", 10)]
    )
    far = Sipp("bench_far_answer_bye.xml", FAR_A, 5082, workdir).start().wait_ready()
    probe = Sipp(
        "bench_caller_forward.xml",
        caller,
        5074,
        workdir,
        remote="127.0.0.1:5060",
        service=did.lstrip("+"),
        timeout_s=10,
        media_port=6200,
    ).run()
    assert probe.ok, probe.describe()
    assert far.wait(10).ok


def adopted_calls(engine: EngineProcess) -> float:
    for line in engine.metrics().splitlines():
        if line.startswith("callcontrol_calls_adopted_total "):
            return float(line.split()[-1])
    raise AssertionError("no callcontrol_calls_adopted_total in /metrics")


def assert_nothing_left(asterisk: AsteriskSandbox) -> None:
    deadline = time.monotonic() + 10
    while our_bridges(asterisk) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert our_bridges(asterisk) == [], "bridges left in Asterisk"


def wait_talking(asterisk: AsteriskSandbox, channels: int, timeout_s: float = 15.0) -> None:
    """At least ``channels`` channels up (a FastAGI call's bridge is Dial()'s own)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = asterisk.cli("core show channels concise").splitlines()
        if sum("!Up!" in line for line in lines) >= channels:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {channels} channels up")


def test_a_killed_engine_restarted_at_once_drops_no_answered_call_and_loses_no_cdr(
    call_path: CallPath,
    asterisk: AsteriskSandbox,
    data: Seeder,
    workdir: Path,
) -> None:
    """ARI: the restarted engine adopts the calls. FastAGI: Dial() carries them on
    alone; their hangup reports wait in the node's file for the restarted engine,
    which routes each call again (its decision died with the old one) for the CDR
    and the charge."""
    engine, ari = call_path.engine, call_path.executor == "ari"
    load = Load(data, workdir, carrier=call_path.carrier)
    try:
        load.start()
        if ari:
            wait_bridged(asterisk, 2 * CALLS)
        else:
            wait_talking(asterisk, 4 * CALLS)  # caller and far end of each call
        engine.kill()
        engine.start()
        # The moment the engine is back, a new call is answered.
        probe_call(data, workdir, PROBE if ari else call_path.carrier)
        load.finish()
        assert_one_answered_cdr_per_call(data, load)
        assert_nothing_left(asterisk)
        if ari:
            assert adopted_calls(engine) >= 2 * CALLS
    finally:
        load.stop()


def test_a_second_engine_with_the_same_app_stands_by_then_takes_the_calls_over(
    engine: EngineProcess,
    asterisk: AsteriskSandbox,
    data: Seeder,
    load: Load,
    workdir: Path,
) -> None:
    second = EngineProcess(env=dict(engine.env), log_path=workdir / "second-engine.log")
    try:
        load.start()
        wait_bridged(asterisk, 2 * CALLS)
        second.start(role="standby")  # it found the first engine's lease: no fight
        assert engine.health()["role"] == "active"
        assert second.health()["lease_holder"] == engine.health()["lease_holder"]
        engine.kill()
        # The lease of a dead engine on this host is free at once: the standby takes over.
        second.wait_role("active", timeout_s=5)
        probe_call(data, workdir)
        load.finish()
        assert_one_answered_cdr_per_call(data, load)
        assert_nothing_left(asterisk)
        assert adopted_calls(second) >= 2 * CALLS
        for log in (engine.log_path, second.log_path):
            assert "application_replaced" not in log.read_text(), "two engines fought"
    finally:
        second.stop()
        engine.start()  # the session's engine, for the tests that follow


def test_an_ari_socket_cut_under_live_and_arriving_calls_fails_no_call(
    engine: EngineProcess,
    asterisk: AsteriskSandbox,
    data: Seeder,
    load: Load,
    workdir: Path,
) -> None:
    proxy = AriProxy().start()
    proxied = EngineProcess(
        env={**engine.env, "CALLCONTROL_ARI__URL": proxy.url},
        log_path=workdir / "proxied-engine.log",
    )
    engine.stop()
    try:
        proxied.start()
        load.start()
        wait_bridged(asterisk, CALLS)  # half of the calls are still arriving
        assert proxy.cut() >= 1, "the engine had no connection through the proxy"
        probe_call(data, workdir)
        load.finish()  # every caller answered: none got a 503 while the socket was down
        assert_one_answered_cdr_per_call(data, load)
        assert_nothing_left(asterisk)
    finally:
        proxied.stop()
        proxy.stop()
        engine.start()


def test_calls_beyond_the_engines_capacity_get_503_at_once_and_leave_nothing_behind(
    engine: EngineProcess,
    asterisk: AsteriskSandbox,
    data: Seeder,
    workdir: Path,
) -> None:
    did = data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 20)]
    )
    held = 4
    small = EngineProcess(
        env={**engine.env, "CALLCONTROL_CALLS__MAX_ACTIVE_CALLS": str(held)},
        log_path=workdir / "small-engine.log",
    )
    far = Sipp("far_answer_hold.xml", FAR_A, 5080, workdir, calls=held, timeout_s=60)
    caller = Sipp(
        "bench_caller_forward.xml",
        CARRIER,
        5070,
        workdir,
        remote="127.0.0.1:5060",
        service=did.lstrip("+"),
        calls=held,
        rate=10,
        timeout_s=60,
    )
    engine.stop()
    try:
        small.start()
        far.start().wait_ready()
        caller.start()
        wait_bridged(asterisk, held)
        shed_before = shed_by_dialplan(asterisk)
        burst = Sipp(
            "caller_expect_code.xml",
            CARRIER,
            5072,
            workdir,
            remote="127.0.0.1:5060",
            service=did.lstrip("+"),
            keys={"caller": "4915100000000"},
            variables={"expected": "503"},
            calls=6,
            rate=20,
            media_port=6100,
        ).run()
        assert burst.successful == 6 and burst.failed == 0, burst.describe()
        answered = caller.wait(60)
        assert answered.successful == held and answered.failed == 0, answered.describe()
        assert far.wait(30).failed == 0, "an admitted call was dropped"
        cdrs = data.cdrs_for(did)
        shed = [c for c in cdrs if c["reject_reason"] == "overload_calls"]
        # Refused by the engine (a CDR each) or, once it saw the congestion, by
        # the dialplan before Stasis (counted there): all six, all 503 above.
        assert len(shed) + shed_by_dialplan(asterisk) - shed_before == 6
        assert shed and {c["hangup_cause"] for c in shed} == {34}
        assert len([c for c in cdrs if c["disposition"] == "answered"]) == held
        assert_nothing_left(asterisk)
    finally:
        caller.stop()
        far.stop()
        small.stop()
        engine.start()


def test_a_burst_above_the_call_rate_is_turned_away_by_the_dialplan_and_recovers_by_itself(
    call_path: CallPath,
    asterisk: AsteriskSandbox,
    data: Seeder,
    workdir: Path,
) -> None:
    """Calls beyond ``calls.max_call_rate`` (per 100 ms) get 503 (cause 34) from the
    dialplan, before Stasis or the FastAGI request (both executors): the engine
    never sees them (no CDR, no request); the calls it admits are answered; once
    the burst is over calls are admitted again."""
    engine, app = call_path.engine, call_path.ari_app
    did = data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 20)]
    )
    capped = EngineProcess(
        env={**engine.env, "CALLCONTROL_CALLS__MAX_CALL_RATE": "10"},
        log_path=workdir / "capped-engine.log",
    )
    far = Sipp(
        "bench_far_answer_bye.xml",
        FAR_A,
        5080,
        workdir,
        calls=1000,
        timeout_s=60,
    )
    scenario = workdir / "burst_caller.xml"
    scenario.write_text(caller_scenario(caller_prefix="4915177", wait_bye_s=10), encoding="utf-8")
    burst = Sipp(
        str(scenario),
        call_path.carrier,
        5070,
        workdir,
        remote="127.0.0.1:5060",
        service=did.lstrip("+"),
        calls=100,
        rate=25,
        timeout_s=40,
    )
    engine.stop()
    try:
        capped.start()
        far.start().wait_ready()
        shed_before = shed_by_dialplan(asterisk, app)
        result = burst.run()
        calls = parse_log(result.logs.splitlines())
        assert len(calls) == 100, result.describe()
        outcomes = Counter(c.outcome for c in calls.values())
        assert set(outcomes) == {"answered", "503"}, outcomes
        shed = [c for c in calls.values() if c.outcome == "503"]
        assert len(shed) >= 40, outcomes  # 25 calls/s against a ceiling of 10/s
        assert {c.failed_cause for c in shed} == {"34"}
        assert all(c.end == "BYE" for c in calls.values() if c.outcome == "answered")
        counted = shed_by_dialplan(asterisk, app) - shed_before
        # The calls the engine saw (each left a CDR) plus those the dialplan shed: all of them.
        deadline = time.monotonic() + 10
        while len(data.cdrs_for(did)) + counted < 100 and time.monotonic() < deadline:
            time.sleep(0.2)
        cdrs = data.cdrs_for(did)
        assert len(cdrs) + counted == 100, (len(cdrs), counted, outcomes)
        assert counted >= 20  # most of the 503s came from the dialplan, not the engine
        wanted = f'callcontrol_calls_shed_total{{reason="dialplan"}} {float(counted)}'
        deadline = time.monotonic() + 5
        while wanted not in (metrics := capped.metrics()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert wanted in metrics, [m for m in metrics.splitlines() if "shed" in m]
        assert_nothing_left(asterisk)
        # The burst is over: the next call is admitted (the ceiling stays, the load is gone).
        probe_call(data, workdir, PROBE if call_path.executor == "ari" else call_path.carrier)
    finally:
        burst.stop()
        far.stop()
        capped.stop()
        engine.start()
