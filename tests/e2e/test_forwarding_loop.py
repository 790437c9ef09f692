"""Forwarding loops through the carrier are stopped at call time (issue #13).

Every leg the engine originates carries ``X-CallControl-Hops: n+1``, where n is
the count the inbound INVITE carried (the dialplan passes it as a Stasis or
FastAGI argument; with FastAGI, ``Dial()``'s pre-dial handler adds it to each
leg; each test runs with both executors). A loop that settings could not
foresee (our DID forwards to a phone number the carrier routes to another of
our DIDs, which forwards back) comes back with a growing count; at
``calls.max_forwarding_hops`` (3 by default) the call is refused with a final
603. SIPp plays the carrier sending the header and the far end that reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.call_paths import CallPath
from support.data import Seeder
from support.engine import EngineProcess
from support.sipp import SCENARIO_DIR, Sipp

from callcontrol.domain.vocabulary import DestinationType

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
FAR = "127.0.0.3"
CALLER_NUMBER = "4915112345678"
LIMIT = 3  # the setting's default: the e2e engine runs with it


def with_hops_header(workdir: Path, scenario: str, hops: int) -> Path:
    """A copy of a caller scenario whose INVITE (its first message) carries ``X-CallControl-Hops``
    (same file name, so tests/support/sipp.py gives it the same SIPp options)."""
    text = (SCENARIO_DIR / scenario).read_text(encoding="utf-8")
    marker = "      Max-Forwards: 70\n"
    if not text.lstrip().startswith("<?xml") or marker not in text.split("</send>")[0]:
        raise RuntimeError(f"{scenario} changed; update with_hops_header")
    folder = workdir / f"hops-{hops}"
    folder.mkdir(exist_ok=True)
    path = folder / scenario
    path.write_text(
        text.replace(marker, f"{marker}      X-CallControl-Hops: {hops}\n", 1), encoding="utf-8"
    )
    return path


def forwarded_did(data: Seeder) -> str:
    return data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:x@{FAR}:5080", 10)]
    )


def logged(engine: EngineProcess, event: str, did: str) -> list[dict[str, object]]:
    found = []
    for line in engine.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            entry = json.loads(line)
            if entry.get("did") == did:
                found.append(entry)
    return found


def test_a_call_at_the_hop_limit_is_refused_with_603_and_logged_as_a_loop(
    call_path: CallPath, data: Seeder, workdir: Path
) -> None:
    did = forwarded_did(data)
    result = Sipp(
        str(with_hops_header(workdir, "caller_expect_code.xml", LIMIT)),
        call_path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        variables={"expected": "603"},
        timeout_s=20,
    ).run()
    assert result.ok, result.describe()
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "rejected" and cdr["reject_reason"] == "forwarding_loop"
    assert cdr["hangup_cause"] == 25 and cdr["sip_code"] == 603
    assert cdr["legs"] == []  # nothing was dialled
    [entry] = logged(call_path.engine, "forwarding_loop", did)
    assert entry["hops"] == LIMIT and entry["level"] == "warning"


@pytest.mark.parametrize("hops", [None, LIMIT - 1], ids=["no-header", "below-limit"])
def test_below_the_limit_the_call_is_forwarded_and_the_far_end_sees_one_hop_more(
    call_path: CallPath, data: Seeder, workdir: Path, hops: int | None
) -> None:
    did = forwarded_did(data)
    scenario = (
        "caller_answered.xml"
        if hops is None
        else str(with_hops_header(workdir, "caller_answered.xml", hops))
    )
    far = Sipp("far_answer.xml", FAR, 5080, workdir, variables={"answer_ms": "100"}, timeout_s=30)
    far.start().wait_ready()
    caller = Sipp(
        scenario,
        call_path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        duration_ms=500,
        timeout_s=30,
    ).run()
    assert caller.ok, caller.describe()
    far_result = far.wait(15)
    assert far_result.ok, far_result.describe()
    invite = far_result.received("INVITE")[0]
    assert invite.header("X-CallControl-Hops") == str((hops or 0) + 1)
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered"
