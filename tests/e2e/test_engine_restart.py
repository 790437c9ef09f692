"""The engine killed mid-call and restarted: nothing stays stuck, the CDR is written.

Runs last (file name order within e2e does not matter: it restarts the shared
engine itself and leaves it running for whoever comes next).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.data import Seeder
from support.engine import EngineProcess
from support.sipp import Sipp

from callcontrol.domain.vocabulary import DestinationType

pytestmark = pytest.mark.e2e

CARRIER, FAR_A = "127.0.0.2", "127.0.0.3"


def test_engine_killed_during_a_bridged_call_restarts_and_ends_it_cleanly(
    engine: EngineProcess, asterisk: AsteriskSandbox, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    did = data.number(
        account, destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)]
    )
    far = Sipp("far_answer.xml", FAR_A, 5080, workdir, variables={"answer_ms": "100"})
    far.start().wait_ready()
    caller = Sipp(
        "caller_answered_wait_bye.xml",
        CARRIER,
        5070,
        workdir,
        remote="127.0.0.1:5060",
        service=did,
        keys={"caller": "4915112345678"},
        timeout_s=30,
    ).start()
    # Wait until the call is bridged (both channels Up in Asterisk).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if asterisk.cli("core show channels concise").count("!Up!") >= 2:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(asterisk.cli("core show channels concise"))
    engine.kill()
    assert data.cdrs_for(did) == [], "the killed engine wrote nothing yet"
    engine.start()
    caller_result = caller.wait(20)
    assert caller_result.ok, caller_result.describe()
    assert caller_result.received("BYE"), "the restarted engine hung the caller up"
    assert far.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["reject_reason"] == "engine_restart" and cdr["disposition"] == "failed"
    assert cdr["caller"] == "4915112345678"
