"""Greeting before forwarding, voicemail recorded and mailed, PSTN credit cap.

Real Asterisk plays the WAV from the media folder, records the caller's RTP,
and cuts a PSTN leg; the engine stores the CDR, the voicemail and the charge.
Each test runs with both executors (``call_path``): with ARI the engine drives
the playback, the recording and the cut; with FastAGI the dialplan does
(``Playback``, ``Record``, ``Dial``'s ``L()``) and the engine gets the report.
"""

from __future__ import annotations

import io
import json
import math
import struct
import wave
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.call_paths import CallPath
from support.data import Seeder
from support.engine import EngineProcess
from support.sipp import Sipp, speaking_caller_scenario, ulaw_tone_wav
from support.smtp import SmtpSink

from callcontrol.domain.vocabulary import DestinationType, LedgerKind

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
FAR_A, PSTN_CARRIER = "127.0.0.3", "127.0.0.5"
CALLER_NUMBER = "4915112345678"


def telephony_wav(path: Path, seconds: float) -> None:
    """WAV PCM 8 kHz 16-bit mono: what the provider accepts for greetings."""
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


def engine_log_events(engine: EngineProcess, name: str) -> list[dict[str, object]]:
    events = []
    for line in engine.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            events.append(json.loads(line))
    return events


def test_greeting_is_played_by_asterisk_before_the_call_is_forwarded(
    call_path: CallPath, asterisk: AsteriskSandbox, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    stored = f"greetings/{account}/welcome.wav"
    telephony_wav(asterisk.media_dir / stored, seconds=2.0)
    did = data.number(
        account,
        greeting=stored,
        destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)],
    )
    far = Sipp("far_answer.xml", FAR_A, 5080, workdir, variables={"answer_ms": "100"}).start()
    far.wait_ready()
    caller = Sipp(
        "caller_answered.xml",
        call_path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        duration_ms=4000,
    ).run()
    assert caller.ok, caller.describe()
    assert far.wait(15).ok
    cdr = data.wait_for_cdr(did)
    # The leg was dialled only after the 2-second greeting had played.
    leg_started = cdr["legs"][0]["started_at"]
    assert (leg_started - cdr["started_at"]).total_seconds() >= 1.9
    assert cdr["disposition"] == "answered", cdr
    if call_path.executor == "ari":  # the engine drove the playback (FastAGI: the dialplan)
        played = [
            e
            for e in engine_log_events(call_path.engine, "playback_finished")
            if e.get("call_id") == cdr["id"] and str(e["media_uri"]).endswith(f"{account}/welcome")
        ]
        assert played and played[0]["state"] == "done", played


def test_nobody_answers_so_voicemail_is_recorded_stored_and_mailed(
    call_path: CallPath,
    asterisk: AsteriskSandbox,
    data: Seeder,
    smtp: SmtpSink,
    workdir: Path,
) -> None:
    email = f"vm-owner-{call_path.executor}@example.invalid"
    account = data.account(email=email)
    vm_greeting = f"greetings/{account}/vm.wav"
    telephony_wav(asterisk.media_dir / vm_greeting, seconds=0.5)
    did = data.number(
        account,
        voicemail=True,
        voicemail_greeting=vm_greeting,
        destinations=[(DestinationType.SIP_URI, f"sip:busy@{FAR_A}:5080", 10)],
    )
    busy = Sipp("far_busy.xml", FAR_A, 5080, workdir).start().wait_ready()
    voice = ulaw_tone_wav(workdir / "voice.wav", seconds=6.0)
    caller = Sipp(
        str(speaking_caller_scenario(workdir, voice)),
        call_path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        duration_ms=4500,
        media_port=6000,
    ).run()
    assert caller.ok, caller.describe()
    assert busy.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "voicemail"
    mail = smtp.wait_for(email)
    assert did in str(mail["Subject"]) and CALLER_NUMBER in str(mail["Subject"])
    attachment = next(part for part in mail.iter_attachments())
    audio = attachment.get_content()
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 8000, 2)
        recorded_s = wav.getnframes() / 8000
    assert recorded_s >= 1.5, f"recorded {recorded_s:.2f}s of the caller's speech"
    messages = data.wait_for_mailed_voicemails(account)
    assert len(messages) == 1
    stored = asterisk.media_dir / messages[0].stored_name
    assert stored.read_bytes() == audio, "the mailed WAV is the stored one"
    if call_path.executor == "agi":
        assert not list((asterisk.media_dir / "voicemail-agi").iterdir()), "recording handed over"


def test_pstn_leg_is_cut_when_the_credit_is_spent_and_charged_once(
    call_path: CallPath, data: Seeder, workdir: Path
) -> None:
    account = data.account(balance_minor=3)  # 3 cents at 60/min: 3 seconds of talk
    data.rate("3361", 60)
    did = data.number(account, destinations=[(DestinationType.PSTN, "+33612345678", 10)])
    carrier = Sipp(
        "far_answer.xml", PSTN_CARRIER, 5060, workdir, variables={"answer_ms": "100"}
    ).start()
    carrier.wait_ready()
    caller = Sipp(
        "caller_answered_wait_bye.xml",
        call_path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        timeout_s=20,
    ).run()
    assert caller.ok, caller.describe()
    assert caller.received("BYE"), "the caller was hung up when the credit ran out"
    assert carrier.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert 2500 <= cdr["talk_ms"] <= 5000, cdr["talk_ms"]
    leg = cdr["legs"][0]
    # The cap and the charge use one rounding rule: the leg is charged the 3 s it
    # was allowed, however many ms late Asterisk tore it down (issue 17).
    assert leg["billed_seconds"] == 3 and leg["destination_type"] == "pstn"
    charges = [e for e in data.ledger_entries(account) if e[0] is LedgerKind.CALL_CHARGE]
    assert len(charges) == 1 and charges[0][2] == f"call:{cdr['id']}:1"
    assert data.balance(account) == 3 + charges[0][1]
    assert data.balance(account) == 0


def test_a_balance_of_one_unit_at_two_per_minute_ends_at_zero_not_below(
    call_path: CallPath, data: Seeder, workdir: Path
) -> None:
    """Issue 17 as reported: 1 minor unit at 2/min is 30 s; the balance ends >= 0."""
    account = data.account(balance_minor=1)
    data.rate("3362", 2)
    did = data.number(account, destinations=[(DestinationType.PSTN, "+33623456789", 10)])
    carrier = Sipp(
        "far_answer.xml",
        PSTN_CARRIER,
        5060,
        workdir,
        variables={"answer_ms": "100"},
        timeout_s=45,
    ).start()
    carrier.wait_ready()
    caller = Sipp(
        "caller_answered_wait_bye.xml",
        call_path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        timeout_s=45,
    ).run()
    assert caller.ok, caller.describe()
    assert caller.received("BYE"), "the caller was hung up when the credit ran out"
    assert carrier.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert 29_000 <= cdr["talk_ms"] <= 32_000, cdr["talk_ms"]
    assert cdr["legs"][0]["billed_seconds"] == 30
    charges = [e for e in data.ledger_entries(account) if e[0] is LedgerKind.CALL_CHARGE]
    assert [c[1] for c in charges] == [-1]
    assert data.balance(account) == 0
