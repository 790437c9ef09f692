"""Inbound calls through real Asterisk 22, the engine process and SIPp.

SIPp plays the carrier's caller (the ``call_path``'s address: each test runs
with the ARI and the FastAGI executor) and every far end (127.0.0.3,
127.0.0.4 on port 5080; the PSTN carrier on 127.0.0.5:5060). Each test makes
its own account and DID, places the call, then checks what SIPp saw and the
CDR (and ledger) the engine wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.call_paths import CallPath
from support.data import Seeder, next_did
from support.sipp import Sipp, SippResult

from callcontrol.domain.vocabulary import (
    DestinationType,
    ForwardingMode,
    NumberKind,
    NumberState,
)

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
FAR_A, FAR_B = "127.0.0.3", "127.0.0.4"
CALLER_NUMBER = "4915112345678"


def expect_code(path: CallPath, workdir: Path, did: str, code: int) -> SippResult:
    return Sipp(
        "caller_expect_code.xml",
        path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        variables={"expected": str(code)},
        timeout_s=20,
    ).run()


def answered_call(path: CallPath, workdir: Path, did: str, talk_ms: int = 1000) -> SippResult:
    return Sipp(
        "caller_answered.xml",
        path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        duration_ms=talk_ms,
        timeout_s=30,
    ).run()


def far_end(workdir: Path, scenario: str, ip: str, port: int = 5080, **variables: str) -> Sipp:
    return Sipp(scenario, ip, port, workdir, variables=variables, timeout_s=40).start().wait_ready()


def test_unknown_did_is_rejected_with_404(call_path: CallPath, data: Seeder, workdir: Path) -> None:
    did = next_did("+4930999")
    result = expect_code(call_path, workdir, did, 404)
    assert result.ok, result.describe()
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "rejected" and cdr["reject_reason"] == "unknown_number"
    assert cdr["sip_code"] == 404 and cdr["caller"] == CALLER_NUMBER


def test_suspended_number_is_rejected_with_403_distinct_from_unknown(
    call_path: CallPath, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    did = data.number(account, state=NumberState.SUSPENDED)
    result = expect_code(call_path, workdir, did, 403)
    assert result.ok, result.describe()
    cdr = data.wait_for_cdr(did)
    assert cdr["reject_reason"] == "suspended"
    assert cdr["account_id"] == account  # still the customer's number: its statistics count it


def test_sms_number_takes_no_calls(call_path: CallPath, data: Seeder, workdir: Path) -> None:
    did = data.number(data.account(), kind=NumberKind.SMS_ONCE)
    result = expect_code(call_path, workdir, did, 404)
    assert result.ok, result.describe()


def test_active_number_is_forwarded_to_a_sip_uri_and_bridged(
    call_path: CallPath, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    did = data.number(
        account, destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)]
    )
    far = far_end(workdir, "far_answer.xml", FAR_A, answer_ms="200")
    caller = answered_call(call_path, workdir, did, talk_ms=1500)
    assert caller.ok, caller.describe()
    far_result = far.wait(15)
    assert far_result.ok, far_result.describe()
    invite = far_result.received("INVITE")[0]
    assert CALLER_NUMBER in (invite.header("From") or ""), "caller id passed on"
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered"
    assert cdr["answered_destination"] == f"1:sip_uri:sip:alice@{FAR_A}:5080"
    assert cdr["talk_ms"] >= 1000 and len(cdr["legs"]) == 1
    assert cdr["legs"][0]["outcome"] == "answered"


def test_sequential_first_busy_then_second_answers(
    call_path: CallPath, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    did = data.number(
        account,
        mode=ForwardingMode.SEQUENTIAL,
        destinations=[
            (DestinationType.SIP_URI, f"sip:busy@{FAR_A}:5080", 10),
            (DestinationType.IP, f"sip:100@{FAR_B}:5080", 10),
        ],
    )
    busy = far_end(workdir, "far_busy.xml", FAR_A)
    answer = far_end(workdir, "far_answer.xml", FAR_B, answer_ms="100")
    caller = answered_call(call_path, workdir, did)
    assert caller.ok, caller.describe()
    assert busy.wait(15).ok
    assert answer.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered"
    assert [leg["outcome"] for leg in cdr["legs"]] == ["busy", "answered"]
    assert cdr["legs"][0]["cause"] == 17


def test_simultaneous_first_answer_wins_and_the_other_leg_is_cancelled(
    call_path: CallPath, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    did = data.number(
        account,
        mode=ForwardingMode.SIMULTANEOUS,
        destinations=[
            (DestinationType.SIP_URI, f"sip:ringing@{FAR_A}:5080", 15),
            (DestinationType.SIP_URI, f"sip:quick@{FAR_B}:5080", 15),
        ],
    )
    ringing = far_end(workdir, "far_no_answer.xml", FAR_A)
    quick = far_end(workdir, "far_answer.xml", FAR_B, answer_ms="300")
    caller = answered_call(call_path, workdir, did)
    assert caller.ok, caller.describe()
    ringing_result = ringing.wait(15)
    assert ringing_result.ok, ringing_result.describe()
    assert ringing_result.received("CANCEL"), "the losing leg receives CANCEL"
    assert quick.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["answered_destination"].startswith("2:")
    assert [leg["outcome"] for leg in cdr["legs"]] == ["cancelled", "answered"]


def test_all_legs_busy_without_voicemail_gives_486(
    call_path: CallPath, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    did = data.number(
        account,
        mode=ForwardingMode.SIMULTANEOUS,
        destinations=[(DestinationType.SIP_URI, f"sip:busy@{FAR_A}:5080", 10)],
    )
    busy = far_end(workdir, "far_busy.xml", FAR_A)
    result = expect_code(call_path, workdir, did, 486)
    assert result.ok, result.describe()
    assert busy.wait(15).ok
    assert data.wait_for_cdr(did)["disposition"] == "busy"
