"""Inbound calls through the FastAGI executor: real Asterisk 22, SIPp, the engine
process with ``calls.executor=agi``.

The test bed's Asterisk runs both executors side by side (bench mode): the
carrier at 127.0.0.8 lands in the FastAGI dialplan (extensions_callcontrol_agi.conf
under ``callcontrol-agi-inbound``), which asks this module's engine on
127.0.0.1:4573; the ARI tests' carrier (127.0.0.2) still goes to Stasis. The
engine here also connects ARI, under an app name of its own, so it never takes
the ARI engine's calls. Far ends are 127.0.0.3/4:5080, as in test_inbound_calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.data import Seeder, next_did
from support.engine import EngineProcess
from support.sipp import Sipp, SippResult
from support.smtp import SmtpSink

from callcontrol.domain.vocabulary import DestinationType, ForwardingMode, NumberState
from provisioning.asterisk_config import BENCH_AGI_CARRIER_IP

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
CARRIER = BENCH_AGI_CARRIER_IP
FAR_A, FAR_B = "127.0.0.3", "127.0.0.4"
CALLER_NUMBER = "4915112345678"


@pytest.fixture(scope="module")
def agi_engine(
    asterisk: AsteriskSandbox,
    db_url: str,
    smtp: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EngineProcess]:
    logs = tmp_path_factory.mktemp("agi-engine")
    process = EngineProcess(
        env={
            "CALLCONTROL_ENVIRONMENT": "test",
            "CALLCONTROL_DATABASE__URL": db_url,
            "CALLCONTROL_CALLS__EXECUTOR": "agi",
            "CALLCONTROL_AGI__HOST": "127.0.0.1",
            "CALLCONTROL_AGI__PORT": "4573",  # the test bed's dialplan asks there
            "CALLCONTROL_ARI__URL": asterisk.ari_url,
            "CALLCONTROL_ARI__USERNAME": asterisk.ari_username,
            "CALLCONTROL_ARI__PASSWORD": asterisk.ari_password,
            "CALLCONTROL_ARI__APP": asterisk.app + "-agi",
            "CALLCONTROL_MEDIA__ROOT": str(asterisk.media_dir),
            "CALLCONTROL_MEDIA__ASTERISK_ROOT": asterisk.media_asterisk_root,
            "CALLCONTROL_SMTP__PORT": str(smtp.port),
            "CALLCONTROL_LOG_FORMAT": "json",
            "CALLCONTROL_FORWARDING__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
            "CALLCONTROL_SPOOL__PATH": str(logs / "spool.db"),
        },
        log_path=logs / "engine.log",
    )
    process.start()
    yield process
    process.stop()


def expect_code(workdir: Path, did: str, code: int) -> SippResult:
    return Sipp(
        "caller_expect_code.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, variables={"expected": str(code)}, timeout_s=20,
    ).run()  # fmt: skip


def answered_call(workdir: Path, did: str, talk_ms: int = 1000) -> SippResult:
    return Sipp(
        "caller_answered.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, duration_ms=talk_ms, timeout_s=30,
    ).run()  # fmt: skip


def far_end(workdir: Path, scenario: str, ip: str, port: int = 5080, **variables: str) -> Sipp:
    return Sipp(scenario, ip, port, workdir, variables=variables, timeout_s=40).start().wait_ready()


def test_unknown_did_is_rejected_with_404_and_leaves_a_cdr(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    did = next_did("+4930998")
    result = expect_code(workdir, did, 404)
    assert result.ok, result.describe()
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "rejected" and cdr["reject_reason"] == "unknown_number"
    assert cdr["sip_code"] == 404 and cdr["caller"] == CALLER_NUMBER


def test_suspended_number_is_rejected_with_403(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    did = data.number(account, state=NumberState.SUSPENDED)
    result = expect_code(workdir, did, 403)
    assert result.ok, result.describe()
    cdr = data.wait_for_cdr(did)
    assert cdr["reject_reason"] == "suspended" and cdr["account_id"] == account


def test_active_number_is_forwarded_to_a_sip_uri_by_native_dial(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    did = data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)]
    )
    far = far_end(workdir, "far_answer.xml", FAR_A, answer_ms="200")
    caller = answered_call(workdir, did, talk_ms=1500)
    assert caller.ok, caller.describe()
    far_result = far.wait(15)
    assert far_result.ok, far_result.describe()
    assert CALLER_NUMBER in (far_result.received("INVITE")[0].header("From") or "")
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered", cdr
    assert cdr["answered_destination"] == f"1:sip_uri:sip:alice@{FAR_A}:5080"
    assert cdr["talk_ms"] >= 1000 and len(cdr["legs"]) == 1
    assert cdr["legs"][0]["outcome"] == "answered"


def test_sequential_first_busy_then_second_answers(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    did = data.number(
        data.account(),
        mode=ForwardingMode.SEQUENTIAL,
        destinations=[
            (DestinationType.SIP_URI, f"sip:busy@{FAR_A}:5080", 10),
            (DestinationType.IP, f"sip:100@{FAR_B}:5080", 10),
        ],
    )
    busy = far_end(workdir, "far_busy.xml", FAR_A)
    answer = far_end(workdir, "far_answer.xml", FAR_B, answer_ms="100")
    caller = answered_call(workdir, did)
    assert caller.ok, caller.describe()
    assert busy.wait(15).ok and answer.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered", cdr
    assert [leg["outcome"] for leg in cdr["legs"]] == ["busy", "answered"]
    assert cdr["legs"][0]["cause"] == 17


def test_every_leg_busy_gives_the_caller_486(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    did = data.number(
        data.account(),
        mode=ForwardingMode.SEQUENTIAL,
        destinations=[
            (DestinationType.SIP_URI, f"sip:busy@{FAR_A}:5080", 10),
            (DestinationType.SIP_URI, f"sip:busy@{FAR_B}:5080", 10),
        ],
    )
    busy_a = far_end(workdir, "far_busy.xml", FAR_A)
    busy_b = far_end(workdir, "far_busy.xml", FAR_B)
    result = expect_code(workdir, did, 486)
    assert result.ok, result.describe()
    assert busy_a.wait(15).ok and busy_b.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "busy" and cdr["sip_code"] == 486, cdr
    assert [leg["outcome"] for leg in cdr["legs"]] == ["busy", "busy"]


def test_engine_not_running_gives_503_not_603(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    did = data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)]
    )
    agi_engine.stop()
    try:
        result = expect_code(workdir, did, 503)
        assert result.ok, result.describe()
    finally:
        agi_engine.start()
    assert data.cdrs_for(did) == []  # nobody decided the call: no engine, no CDR
