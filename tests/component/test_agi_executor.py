"""The FastAGI executor behind a real FastAGI server, with a fake router, ledger and
voicemail box: what the dialplan is told, and the CDR its hangup report becomes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from callcontrol.agi.executor import AgiExecutor, MediaFolders
from callcontrol.agi.plans import HANGUP_ARGS
from callcontrol.agi.server import AgiServer
from callcontrol.domain.call_events import CallRecord
from callcontrol.domain.routing import (
    DestinationFacts,
    NumberSnapshot,
    Reject,
    RoutingPolicy,
    decide_inbound,
)
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    Disposition,
    NumberKind,
    NumberState,
)
from callcontrol.engine.routers import RoutedCall
from callcontrol.engine.supervisor import TaskSupervisor

SNAPSHOT = NumberSnapshot(
    number_id=7, account_id=3, e164="+4930123456", kind=NumberKind.VOICE,
    state=NumberState.ACTIVE, balance_minor=600, currency="EUR", voicemail_enabled=True,
    destinations=(DestinationFacts(1, DestinationType.SIP_URI, "sip:a@127.0.0.3:5080", 20),),
)  # fmt: skip


class Router:
    def __init__(self) -> None:
        self.asked: list[tuple[CallDirection, str, str | None]] = []
        self.hops: list[int] = []

    async def route_number(
        self, direction: CallDirection, number: str, party: str | None, *, hops: int = 0
    ) -> RoutedCall:
        self.asked.append((direction, number, party))
        self.hops.append(hops)
        if number == "+4930000000":
            return RoutedCall(direction, Reject(1, "unknown_number"), number, party)
        decision = decide_inbound(
            SNAPSHOT, caller_id=party, now=datetime.now(UTC), policy=RoutingPolicy()
        )
        return RoutedCall(direction, decision, number, party)


class Ledger:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    async def record_call(self, record: CallRecord) -> None:
        self.records.append(record)


class Box:
    def __init__(self) -> None:
        self.delivered: list[dict[str, object]] = []

    async def deliver(self, **kwargs: object) -> None:
        self.delivered.append(kwargs)


def header(script: str, uniqueid: str, *args: str) -> bytes:
    lines = [f"agi_network_script: {script}", f"agi_request: agi://h/{script}"]
    lines += [f"agi_uniqueid: {uniqueid}", "agi_callerid: 4915112345678"]
    lines += [f"agi_arg_{i}: {value}" for i, value in enumerate(args, start=1)]
    return ("\n".join(lines) + "\n\n").encode()


async def asterisk_side(port: int, request: bytes, *, fail_at: int | None = None) -> list[str]:
    """Play Asterisk: send the request, answer every command 200 (or 511 at ``fail_at``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    commands: list[str] = []
    while line := await reader.readline():
        commands.append(line.decode().rstrip("\n"))
        refused = fail_at is not None and len(commands) == fail_at
        writer.write(b"511 Command Not Permitted\n" if refused else b"200 result=1\n")
    writer.close()
    return commands


def hangup_args(**values: str) -> tuple[str, ...]:
    return tuple(values.get(name, "") for name in HANGUP_ARGS)


async def running(
    tmp_path: Path,
) -> tuple[AgiExecutor, AgiServer, Router, Ledger, Box, TaskSupervisor]:
    router, ledger, box, jobs = Router(), Ledger(), Box(), TaskSupervisor("test")
    executor = AgiExecutor(
        router=router, ledger=ledger, voicemail=box, jobs=jobs,
        media=MediaFolders(tmp_path, "/srv/media"),
    )  # fmt: skip
    executor.prepare()
    server = AgiServer(executor.handlers(), host="127.0.0.1", port=0)
    await server.start()
    return executor, server, router, ledger, box, jobs


async def test_a_decision_is_set_with_the_action_last_then_the_hangup_leaves_its_cdr(
    tmp_path: Path,
) -> None:
    executor, server, router, ledger, _, jobs = await running(tmp_path)
    commands = await asterisk_side(server.port, header("inbound", "17.1", "4930123456", "", "2"))
    assert router.asked == [(CallDirection.INBOUND, "4930123456", "4915112345678")]
    assert router.hops == [2], "the INVITE's X-CallControl-Hops reaches the decision"
    assert len(commands) == 2, "one MSet for the plan, then the action: two round trips"
    assert commands[0].startswith('EXEC MSet "CC_STEPS=1,')
    assert "CC_DIAL1=PJSIP/callcontrol-external/sip:a@127.0.0.3:5080," in commands[0]
    assert "CC_VM_FILE=/srv/media/voicemail-agi/vm-17_1" in commands[0]
    assert commands[-1] == 'SET VARIABLE CC_ACTION "forward"'
    now = datetime.now(UTC).timestamp()
    report = hangup_args(
        CC_STEP="1", CC_T1=f"{now - 3:.3f}", DIALSTATUS="ANSWER", DIALEDTIME_MS="3000",
        ANSWEREDTIME_MS="2500", HANGUPCAUSE="16", CC_PHASE="ringing", CC_NOW=f"{now:.3f}",
    )  # fmt: skip
    assert await asterisk_side(server.port, header("hangup", "17.1", *report)) == []
    await jobs.drain(2)
    [cdr] = ledger.records
    assert cdr.call_id == "17_1" and cdr.disposition is Disposition.ANSWERED
    assert cdr.talk_ms == 2500 and cdr.number_id == 7
    assert len(router.asked) == 1  # the hangup used the decision it remembered
    await server.close()
    assert executor.calls_decided == executor.calls_finished == 1


async def test_a_request_failing_half_way_sets_no_action_so_the_dialplan_gives_503(
    tmp_path: Path,
) -> None:
    executor, server, *_ = await running(tmp_path)
    commands = await asterisk_side(server.port, header("inbound", "17.2", "4930123456"), fail_at=1)
    assert len(commands) == 1 and not any("CC_ACTION" in c for c in commands)
    assert executor.calls_decided == 0
    await server.close()


async def test_a_hangup_of_a_call_decided_elsewhere_is_routed_again_for_its_cdr(
    tmp_path: Path,
) -> None:
    _, server, router, ledger, _, jobs = await running(tmp_path)
    report = hangup_args(
        CC_PHASE="done", CC_DIRECTION="inbound", CC_NUMBER="+4930000000", CC_PARTY="4915",
        CC_START=f"{datetime.now(UTC).timestamp() - 1:.3f}",
    )  # fmt: skip
    await asterisk_side(server.port, header("hangup", "17.3", *report))
    await jobs.drain(2)
    assert router.asked == [(CallDirection.INBOUND, "+4930000000", "4915")]
    [cdr] = ledger.records
    assert cdr.disposition is Disposition.REJECTED and cdr.reject_reason == "unknown_number"
    await server.close()


async def test_a_recorded_message_is_delivered_and_its_file_removed(tmp_path: Path) -> None:
    _, server, _, ledger, box, jobs = await running(tmp_path)
    await asterisk_side(server.port, header("inbound", "17.4", "4930123456"))
    audio = b"RIFF" + b"\0" * 40 + b"\1\0" * 24_000  # 3 s of 8 kHz 16-bit
    recording = tmp_path / "voicemail-agi" / "vm-17_4.wav"
    recording.write_bytes(audio)
    now = datetime.now(UTC).timestamp()
    report = hangup_args(
        CC_STEP="1", CC_T1=f"{now - 30:.3f}", CC_R1="NOANSWER|20000||", CC_PHASE="done",
        CC_VM_AT=f"{now - 4:.3f}", CC_NOW=f"{now:.3f}",
    )  # fmt: skip
    await asterisk_side(server.port, header("hangup", "17.4", *report))
    await jobs.drain(2)
    assert ledger.records[0].disposition is Disposition.VOICEMAIL
    [message] = box.delivered
    assert message["number_id"] == 7 and message["duration_s"] == 3 and message["audio"] == audio
    assert not recording.exists()
    await server.close()


class Lag:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, created_at: float) -> None:
        self.seen.append(created_at)


async def test_the_time_the_dialplan_asked_feeds_the_intake_lag_the_shedding_follows(
    tmp_path: Path,
) -> None:
    lag, jobs = Lag(), TaskSupervisor("test")
    executor = AgiExecutor(
        router=Router(), ledger=Ledger(), voicemail=Box(), jobs=jobs,
        media=MediaFolders(tmp_path, "/srv/media"), intake_lag=lag,
    )  # fmt: skip
    server = AgiServer(executor.handlers(), host="127.0.0.1", port=0)
    await server.start()
    try:
        await asterisk_side(server.port, header("inbound", "18.1", "4930123456", "", "", "1.5e9"))
        # An old dialplan (no fifth argument) or garbage: no sample, the call still decided.
        await asterisk_side(server.port, header("inbound", "18.2", "4930123456", "", ""))
        await asterisk_side(server.port, header("inbound", "18.3", "4930123456", "", "", "nan"))
    finally:
        await server.close()
    assert lag.seen == [1.5e9]
    assert executor.calls_decided == 3
