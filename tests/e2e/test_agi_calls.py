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

import io
import math
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.data import Seeder, next_did
from support.engine import EngineProcess
from support.sipp import Sipp, SippResult, speaking_caller_scenario, ulaw_tone_wav
from support.smtp import SmtpSink

from callcontrol.domain.vocabulary import DestinationType, ForwardingMode, LedgerKind, NumberState
from provisioning.asterisk_config import BENCH_AGI_CARRIER_IP

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
CARRIER = BENCH_AGI_CARRIER_IP
FAR_A, FAR_B, PSTN_CARRIER = "127.0.0.3", "127.0.0.4", "127.0.0.5"
CALLER_NUMBER = "4915112345678"


@pytest.fixture(scope="module")
def agi_engine(
    asterisk: AsteriskSandbox,
    db_url: str,
    smtp: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EngineProcess]:
    logs = tmp_path_factory.mktemp("agi-engine")
    for stale in (fallback_file(asterisk), fallback_file(asterisk).with_suffix(".log.replaying")):
        stale.unlink(missing_ok=True)  # another run's reports, of another database
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
            # Where the dialplan keeps hangup reports while the engine is down.
            "CALLCONTROL_AGI__CDR_FALLBACK_PATH": str(fallback_file(asterisk)),
            "CALLCONTROL_AGI__CDR_FALLBACK_EVERY_S": "0.5",
        },
        log_path=logs / "engine.log",
    )
    process.start()
    yield process
    process.stop()


def fallback_file(asterisk: AsteriskSandbox) -> Path:
    return asterisk.layout.root / "var/log/asterisk/callcontrol-agi-cdr.log"


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


def telephony_wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 400 * n / 8000)))
        for n in range(int(8000 * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)


def test_simultaneous_legs_ring_together_and_the_first_answer_wins(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    did = data.number(
        data.account(),
        mode=ForwardingMode.SIMULTANEOUS,
        destinations=[
            (DestinationType.SIP_URI, f"sip:ringing@{FAR_A}:5080", 15),
            (DestinationType.SIP_URI, f"sip:quick@{FAR_B}:5080", 15),
        ],
    )
    ringing = far_end(workdir, "far_no_answer.xml", FAR_A)
    quick = far_end(workdir, "far_answer.xml", FAR_B, answer_ms="300")
    caller = answered_call(workdir, did)
    assert caller.ok, caller.describe()
    ringing_result = ringing.wait(15)
    assert ringing_result.ok, ringing_result.describe()
    assert ringing_result.received("CANCEL"), "the losing leg receives CANCEL"
    assert quick.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered" and cdr["answered_destination"].startswith("2:"), cdr
    assert [leg["outcome"] for leg in cdr["legs"]] == ["cancelled", "answered"]


def test_greeting_is_played_by_the_dialplan_before_the_leg_is_dialled(
    agi_engine: EngineProcess, asterisk: AsteriskSandbox, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    stored = f"greetings/{account}/welcome.wav"
    telephony_wav(asterisk.media_dir / stored, seconds=2.0)
    did = data.number(
        account,
        greeting=stored,
        destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)],
    )
    far = far_end(workdir, "far_answer.xml", FAR_A, answer_ms="100")
    caller = answered_call(workdir, did, talk_ms=4000)
    assert caller.ok, caller.describe()
    assert far.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered", cdr
    leg_started = cdr["legs"][0]["started_at"]
    assert (leg_started - cdr["started_at"]).total_seconds() >= 1.9


def test_nobody_answers_so_the_dialplan_records_and_the_engine_mails_it(
    agi_engine: EngineProcess,
    asterisk: AsteriskSandbox,
    data: Seeder,
    smtp: SmtpSink,
    workdir: Path,
) -> None:
    email = "agi-vm-owner@example.invalid"
    account = data.account(email=email)
    vm_greeting = f"greetings/{account}/vm.wav"
    telephony_wav(asterisk.media_dir / vm_greeting, seconds=0.5)
    did = data.number(
        account,
        voicemail=True,
        voicemail_greeting=vm_greeting,
        destinations=[(DestinationType.SIP_URI, f"sip:busy@{FAR_A}:5080", 10)],
    )
    busy = far_end(workdir, "far_busy.xml", FAR_A)
    voice = ulaw_tone_wav(workdir / "voice.wav", seconds=6.0)
    caller = Sipp(
        str(speaking_caller_scenario(workdir, voice)), CARRIER, 5070, workdir, remote=ASTERISK,
        service=did, keys={"caller": CALLER_NUMBER}, duration_ms=4500, media_port=6000,
    ).run()  # fmt: skip
    assert caller.ok, caller.describe()
    assert busy.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "voicemail", cdr
    mail = smtp.wait_for(email)
    assert did in str(mail["Subject"])
    audio = next(part for part in mail.iter_attachments()).get_content()
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 8000, 2)
        recorded_s = wav.getnframes() / 8000
    assert recorded_s >= 1.5, f"recorded {recorded_s:.2f}s of the caller's speech"
    assert len(data.voicemails(account)) == 1
    assert not list((asterisk.media_dir / "voicemail-agi").iterdir()), "recording handed over"


def test_pstn_leg_is_cut_by_dial_L_when_the_credit_is_spent_and_charged_once(
    agi_engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    account = data.account(balance_minor=3)  # 3 cents at 60/min: 3 seconds of talk
    data.rate("3364", 60)
    did = data.number(account, destinations=[(DestinationType.PSTN, "+33645678901", 10)])
    carrier = Sipp(
        "far_answer.xml", PSTN_CARRIER, 5060, workdir, variables={"answer_ms": "100"}
    ).start()
    carrier.wait_ready()
    caller = Sipp(
        "caller_answered_wait_bye.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, timeout_s=20,
    ).run()  # fmt: skip
    assert caller.ok, caller.describe()
    assert caller.received("BYE"), "Asterisk hung the caller up when the credit ran out"
    assert carrier.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert 2500 <= cdr["talk_ms"] <= 5000, cdr["talk_ms"]
    assert cdr["legs"][0]["billed_seconds"] == 3
    charges = [e for e in data.ledger_entries(account) if e[0] is LedgerKind.CALL_CHARGE]
    assert len(charges) == 1 and charges[0][2] == f"call:{cdr['id']}:1"
    assert data.balance(account) == 0


def test_a_call_that_ends_while_the_engine_is_down_still_leaves_its_cdr(
    agi_engine: EngineProcess, asterisk: AsteriskSandbox, data: Seeder, workdir: Path
) -> None:
    """The hangup handler cannot reach the engine: the dialplan keeps the report in
    the node's fallback file, and the engine, back, turns it into the CDR."""
    did = data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)]
    )
    far = far_end(workdir, "far_answer.xml", FAR_A, answer_ms="100")
    caller = Sipp(
        "caller_answered.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, duration_ms=4000, timeout_s=30,
    ).start()  # fmt: skip
    _wait_for_bridged_call(asterisk)
    agi_engine.stop()
    try:
        assert caller.wait(20).ok
        assert far.wait(15).ok
        assert fallback_file(asterisk).exists(), "the hangup report was kept on the node"
        assert data.cdrs_for(did) == []
    finally:
        agi_engine.start()
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered" and cdr["talk_ms"] >= 3000, cdr
    assert not fallback_file(asterisk).exists()


def _wait_for_bridged_call(asterisk: AsteriskSandbox, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = asterisk.cli("core show channels concise").splitlines()
        if sum("!Up!" in line for line in lines) >= 2:
            return
        time.sleep(0.1)
    raise AssertionError("the call was not answered")
