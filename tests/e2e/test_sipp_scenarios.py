"""The SIPp scenarios judge calls correctly against the real Asterisk.

Uses the benchmark's dialplan-only twins (carrier 127.0.0.9, context bench-twin):
numbers 1X. are rejected with cause 21 (403), numbers 2X. are dialled to the far
end on 127.0.0.3:5080 - so these tests need no engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.sipp import Sipp

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
BENCH_CARRIER_IP = "127.0.0.9"
FAR_IP, FAR_PORT = "127.0.0.3", 5080


def _bench_caller(scenario: str, number: str, workdir: Path, **options: object) -> Sipp:
    return Sipp(
        scenario,
        BENCH_CARRIER_IP,
        5070,
        workdir,
        remote=ASTERISK,
        service=number,
        keys={"caller": "4915112345678"},
        timeout_s=15,
        **options,  # type: ignore[arg-type]
    )


def test_expect_code_passes_on_the_expected_code(asterisk: AsteriskSandbox, tmp_path: Path) -> None:
    result = _bench_caller(
        "caller_expect_code.xml", "1000", tmp_path, variables={"expected": "403"}
    ).run()
    assert result.ok, result.describe()
    assert result.final_response() == 403


def test_expect_code_fails_on_a_different_code(asterisk: AsteriskSandbox, tmp_path: Path) -> None:
    result = _bench_caller(
        "caller_expect_code.xml", "1000", tmp_path, variables={"expected": "404"}
    ).run()
    assert result.exit_code == 1 and result.failed == 1, result.describe()
    assert result.final_response() == 403


def test_answered_call_through_asterisk_reaches_far_end(
    asterisk: AsteriskSandbox, tmp_path: Path
) -> None:
    far = (
        Sipp(
            "far_answer.xml",
            FAR_IP,
            FAR_PORT,
            tmp_path,
            variables={"answer_ms": "200"},
            timeout_s=15,
        )
        .start()
        .wait_ready()
    )
    caller = _bench_caller("caller_answered.xml", "2000", tmp_path, duration_ms=500).run()
    far_result = far.wait()
    assert caller.ok, caller.describe()
    assert far_result.ok, far_result.describe()
    invite = far_result.received("INVITE")[0]
    assert invite.first_line.startswith("INVITE sip:far@127.0.0.3:5080")


def test_caller_gives_up_while_far_end_rings(asterisk: AsteriskSandbox, tmp_path: Path) -> None:
    far = Sipp("far_no_answer.xml", FAR_IP, FAR_PORT, tmp_path, timeout_s=15).start().wait_ready()
    caller = _bench_caller(
        "caller_cancel.xml", "2000", tmp_path, variables={"ring_ms": "500"}
    ).run()
    far_result = far.wait()
    assert caller.ok and caller.final_response() == 487, caller.describe()
    assert far_result.ok and far_result.received("CANCEL"), far_result.describe()


def test_busy_far_end_is_reported_to_the_caller(asterisk: AsteriskSandbox, tmp_path: Path) -> None:
    far = Sipp("far_busy.xml", FAR_IP, FAR_PORT, tmp_path, timeout_s=15).start().wait_ready()
    caller = _bench_caller(
        "caller_expect_code.xml", "2000", tmp_path, variables={"expected": "486"}
    ).run()
    assert caller.ok, caller.describe()
    assert far.wait().ok
