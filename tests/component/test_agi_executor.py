"""The FastAGI executor behind a real FastAGI server and a real report folder, with a
fake router, ledger and voicemail box: what the dialplan is told, and the CDR its
hangup report (a line in the node's report file) becomes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import structlog

from callcontrol.agi.executor import AgiExecutor, MediaFolders
from callcontrol.agi.plans import REPORT_FIELDS
from callcontrol.agi.reports import HangupReports
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

SNAPSHOT = NumberSnapshot(
    number_id=7, account_id=3, e164="+4930123456", kind=NumberKind.VOICE,
    state=NumberState.ACTIVE, balance_minor=600, currency="EUR", voicemail_enabled=True,
    destinations=(DestinationFacts(1, DestinationType.SIP_URI, "sip:a@127.0.0.3:5080", 20),),
)  # fmt: skip


class Router:
    def __init__(self) -> None:
        self.asked: list[tuple[CallDirection, str, str | None]] = []
        self.hops: list[int] = []
        self.logged_call_ids: list[object] = []  # what a log line while routing carries

    async def route_number(
        self, direction: CallDirection, number: str, party: str | None, *, hops: int = 0
    ) -> RoutedCall:
        self.asked.append((direction, number, party))
        self.hops.append(hops)
        self.logged_call_ids.append(structlog.contextvars.get_contextvars().get("call_id"))
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


def report(folder: Path, **values: str) -> None:
    """Play the dialplan's hangup handler: append the call's line to this minute's file."""
    line = ",".join(values.get(name, "") for name in REPORT_FIELDS)
    with (folder / "callcontrol-agi-20261202-1700.cdr").open("a") as handle:
        handle.write(line + "\n")


async def running(tmp_path: Path) -> tuple[AgiExecutor, AgiServer, Router, Ledger, Box]:
    router, ledger, box = Router(), Ledger(), Box()
    executor = AgiExecutor(
        router=router, ledger=ledger, voicemail=box, media=MediaFolders(tmp_path, "/srv/media")
    )
    executor.prepare()
    server = AgiServer(executor.handlers(), host="127.0.0.1", port=0)
    await server.start()
    return executor, server, router, ledger, box


async def test_a_plan_is_one_mset_with_the_action_last_then_the_report_leaves_its_cdr(
    tmp_path: Path,
) -> None:
    executor, server, router, ledger, _ = await running(tmp_path)
    commands = await asterisk_side(server.port, header("inbound", "17.1", "4930123456", "2"))
    assert router.asked == [(CallDirection.INBOUND, "4930123456", "4915112345678")]
    assert router.hops == [2], "the INVITE's X-CallControl-Hops reaches the decision"
    assert len(commands) == 1, "the whole plan in one MSet: one round trip"
    assert commands[0].startswith('EXEC MSet "CC_STEPS=1,')
    assert "CC_DIAL1=PJSIP/callcontrol-external/sip:a@127.0.0.3:5080," in commands[0]
    assert "CC_VM_FILE=/srv/media/voicemail-agi/vm-17_1" in commands[0]
    assert commands[0].endswith(',CC_ACTION=forward"'), "the action last"
    now = datetime.now(UTC).timestamp()
    report(
        tmp_path, UNIQUEID="17.1", CC_STEP="1", CC_T1=f"{now - 3:.3f}", DIALSTATUS="ANSWER",
        DIALEDTIME_MS="3000", ANSWEREDTIME_MS="2500", HANGUPCAUSE="16", CC_PHASE="ringing",
        CC_NOW=f"{now:.3f}",
    )  # fmt: skip
    assert await executor.finish_reported(HangupReports(tmp_path)) == 1
    [cdr] = ledger.records
    assert cdr.call_id == "17_1" and cdr.disposition is Disposition.ANSWERED
    assert cdr.talk_ms == 2500 and cdr.number_id == 7
    assert len(router.asked) == 1  # the report used the decision it remembered
    await server.close()
    assert executor.calls_decided == executor.calls_finished == 1


async def test_the_log_lines_of_a_decision_carry_its_call_id_and_no_other(
    tmp_path: Path,
) -> None:
    _, server, router, _, _ = await running(tmp_path)
    await asterisk_side(server.port, header("inbound", "17.1", "4930123456"))
    await asterisk_side(server.port, header("inbound", "18.2", "4930000000"))
    await server.close()
    assert router.logged_call_ids == ["17_1", "18_2"]
    assert "call_id" not in structlog.contextvars.get_contextvars(), "bound in its task only"


async def test_a_caller_number_with_commas_arrives_whole_and_shifts_nothing(
    tmp_path: Path,
) -> None:
    """A SIP user part may hold commas; AGI() splits its arguments on them. The
    party is the last argument, and the executor joins what follows the third."""
    _, server, router, _, _ = await running(tmp_path)
    await asterisk_side(server.port, header("inbound", "19.1", "4930123456", "1", "", "+49", "5"))
    await server.close()
    assert router.asked == [(CallDirection.INBOUND, "4930123456", "+49,5")]
    assert router.hops == [1], "the hops were not taken from the caller's number"


async def test_a_request_failing_half_way_sets_no_action_so_the_dialplan_gives_503(
    tmp_path: Path,
) -> None:
    executor, server, *_ = await running(tmp_path)
    commands = await asterisk_side(server.port, header("inbound", "17.2", "4930123456"), fail_at=1)
    assert len(commands) == 1
    assert executor.calls_decided == 0
    await server.close()


async def test_a_report_of_a_call_decided_elsewhere_is_routed_again_for_its_cdr(
    tmp_path: Path,
) -> None:
    executor, server, router, ledger, _ = await running(tmp_path)
    report(
        tmp_path, UNIQUEID="17.3", CC_PHASE="done", CC_DIRECTION="inbound",
        CC_NUMBER="+4930000000", CC_PARTY="4915",
        CC_START=f"{datetime.now(UTC).timestamp() - 1:.3f}",
    )  # fmt: skip
    await executor.finish_reported(HangupReports(tmp_path))
    assert router.asked == [(CallDirection.INBOUND, "+4930000000", "4915")]
    [cdr] = ledger.records
    assert cdr.disposition is Disposition.REJECTED and cdr.reject_reason == "unknown_number"
    await server.close()


async def test_a_recorded_message_is_delivered_and_its_file_removed(tmp_path: Path) -> None:
    executor, server, _, ledger, box = await running(tmp_path)
    await asterisk_side(server.port, header("inbound", "17.4", "4930123456"))
    audio = b"RIFF" + b"\0" * 40 + b"\1\0" * 24_000  # 3 s of 8 kHz 16-bit
    recording = tmp_path / "voicemail-agi" / "vm-17_4.wav"
    recording.write_bytes(audio)
    now = datetime.now(UTC).timestamp()
    report(
        tmp_path, UNIQUEID="17.4", CC_STEP="1", CC_T1=f"{now - 30:.3f}",
        CC_R1="NOANSWER|20000||", CC_PHASE="done", CC_VM_AT=f"{now - 4:.3f}", CC_NOW=f"{now:.3f}",
    )  # fmt: skip
    await executor.finish_reported(HangupReports(tmp_path))
    assert ledger.records[0].disposition is Disposition.VOICEMAIL
    [message] = box.delivered
    assert message["number_id"] == 7 and message["duration_s"] == 3 and message["audio"] == audio
    assert not recording.exists()
    await server.close()


class FailingOnce(Ledger):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def record_call(self, record: CallRecord) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("the disk under the spool is full")
        await super().record_call(record)


async def test_a_batch_whose_cdr_failed_is_read_again_and_a_restarted_reader_goes_on(
    tmp_path: Path,
) -> None:
    ledger = FailingOnce()
    executor = AgiExecutor(
        router=Router(), ledger=ledger, voicemail=Box(), media=MediaFolders(tmp_path, "/m")
    )
    for n in (1, 2):
        report(tmp_path, UNIQUEID=f"19.{n}", CC_PHASE="done", CC_DIRECTION="inbound",
               CC_NUMBER="+4930000000", CC_NOW=f"{datetime.now(UTC).timestamp():.3f}")  # fmt: skip
    assert await executor.finish_reported(HangupReports(tmp_path)) == 0, "held: one failed"
    assert await executor.finish_reported(HangupReports(tmp_path)) == 2, "read again"
    assert sorted(r.call_id for r in ledger.records) == ["19_1", "19_1", "19_2"][
        : len(ledger.records)
    ] or {r.call_id for r in ledger.records} == {"19_1", "19_2"}
    # A reader started afresh (an engine restarted) takes only what came after.
    report(tmp_path, UNIQUEID="19.3", CC_PHASE="done", CC_DIRECTION="inbound",
           CC_NUMBER="+4930000000")  # fmt: skip
    before = len(ledger.records)
    assert await executor.finish_reported(HangupReports(tmp_path)) == 1
    assert [r.call_id for r in ledger.records[before:]] == ["19_3"]


class Lag:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, created_at: float) -> None:
        self.seen.append(created_at)


async def test_the_time_the_dialplan_asked_feeds_the_intake_lag_the_shedding_follows(
    tmp_path: Path,
) -> None:
    lag = Lag()
    executor = AgiExecutor(
        router=Router(), ledger=Ledger(), voicemail=Box(),
        media=MediaFolders(tmp_path, "/srv/media"), intake_lag=lag,
    )  # fmt: skip
    server = AgiServer(executor.handlers(), host="127.0.0.1", port=0)
    await server.start()
    try:
        await asterisk_side(server.port, header("inbound", "18.1", "4930123456", "", "1.5e9"))
        # An old dialplan (no fifth argument) or garbage: no sample, the call still decided.
        await asterisk_side(server.port, header("inbound", "18.2", "4930123456", "", ""))
        await asterisk_side(server.port, header("inbound", "18.3", "4930123456", "", "nan"))
    finally:
        await server.close()
    assert lag.seen == [1.5e9]
    assert executor.calls_decided == 3
