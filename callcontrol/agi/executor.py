"""The FastAGI executor: the dialplan asks, the same router decides, the
decision goes back as channel variables; the hangup handler's report becomes
the CDR (and the voicemail), written through the engine's spooled ports.

Rules kept here:
- decisions come from the same ``DirectionRouter`` as the ARI engine's, so
  both executors run the same pure plans (``decide_inbound``/``decide_outbound``);
- a plan is one ``EXEC MSet`` (one round trip per decision) whose last
  variable is ``CC_ACTION``. res_agi runs even a line cut short by EOF, so a
  request that fails half-way can leave some variables set but never a valid
  action (no action word is a prefix of another); the dialplan goes on only
  when ``callcontrol-agi-run`` has the action, else it retries, then answers
  503 (never a half plan);
- a call's end costs no request: the hangup handler appends a line to the
  node's report file (``callcontrol/agi/reports.py``), and ``read_reports``
  turns each line into the CDR (and the voicemail) through the spooled ports:
  a database outage costs a CDR nothing, and so does an engine that is down
  when the call ends (its line waits in the file). The ledger needs no journal
  of its own here: a batch of lines is committed only once each CDR is with
  the ledger, so a crash in between reads them again, which is harmless (a
  CDR's id is its call's id and stored once);
- a report of a call this process did not decide (it restarted in between)
  is routed again from the facts the dialplan passes (direction, number,
  party) for its CDR; the dialplan's ``CC_START`` keeps the real start time.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog

from callcontrol.agi.plans import (
    HangupFacts,
    agi_call_record,
    parse_hangup_line,
    plan_variables,
)
from callcontrol.agi.protocol import set_variables
from callcontrol.agi.reports import HangupReports
from callcontrol.agi.server import AgiHandler, AgiSession
from callcontrol.domain.call_events import CallRecord
from callcontrol.domain.contract import parse_hops, safe_id
from callcontrol.domain.vocabulary import CallDirection, Disposition
from callcontrol.engine.ports import CallLedger, VoicemailBox
from callcontrol.engine.routers import RoutedCall

log = structlog.get_logger(__name__)

VOICEMAIL_FOLDER = "voicemail-agi"
"""Under the media root: where the dialplan's Record() leaves a message."""
_MAX_PENDING = 100_000
_BUSY_EVERY_S = 0.05
_WAV_HEADER = 44
_BYTES_PER_SECOND = 16_000  # 8 kHz, 16-bit mono: what Record(...wav) writes


class IntakeObserver(Protocol):
    def observe(self, created_at: float) -> None: ...


class PushedDecisions(Protocol):
    """``plan_push.PlanPublisher``: the decision of a plan the dialplan ran."""

    def decision_of(self, version: int) -> RoutedCall | None: ...


class NumberRouter(Protocol):
    async def route_number(
        self, direction: CallDirection, number: str, party: str | None, *, hops: int = 0
    ) -> RoutedCall: ...


@dataclass(frozen=True, slots=True)
class MediaFolders:
    """The voicemail folder as the engine sees it and as Asterisk sees it."""

    engine_root: Path
    asterisk_root: str

    def engine_file(self, name: str) -> Path:
        return self.engine_root / VOICEMAIL_FOLDER / f"{name}.wav"

    def asterisk_file(self, name: str) -> str:
        """Without extension: the dialplan appends ``.wav``."""
        return f"{self.asterisk_root.rstrip('/')}/{VOICEMAIL_FOLDER}/{name}"


@dataclass(frozen=True, slots=True)
class _Decided:
    routed: RoutedCall
    started_at: datetime


class AgiExecutor:
    def __init__(
        self,
        *,
        router: NumberRouter,
        ledger: CallLedger,
        voicemail: VoicemailBox,
        media: MediaFolders,
        intake_lag: IntakeObserver | None = None,
        pushed: PushedDecisions | None = None,
    ) -> None:
        self._router = router
        self._pushed = pushed
        self._intake_lag = intake_lag
        self._ledger = ledger
        self._voicemail = voicemail
        self._media = media
        self._decided: OrderedDict[str, _Decided] = OrderedDict()
        self.calls_decided = 0
        self.calls_finished = 0

    def handlers(self) -> dict[str, AgiHandler]:
        """The scripts the dialplan asks for: ``agi://host:port/<script>``."""
        return {"inbound": self.inbound, "outbound": self.outbound}

    def prepare(self) -> None:
        """Make the folder Record() writes into (Asterisk does not create it)."""
        (self._media.engine_root / VOICEMAIL_FOLDER).mkdir(parents=True, exist_ok=True)

    async def inbound(self, session: AgiSession) -> None:
        await self._decide(session, CallDirection.INBOUND)

    async def outbound(self, session: AgiSession) -> None:
        await self._decide(session, CallDirection.OUTBOUND)

    async def _decide(self, session: AgiSession, direction: CallDirection) -> None:
        header = session.header
        # Arguments: number, hops, when asked, party. The party is last and joined
        # again: a caller number may hold commas, which split AGI() arguments.
        number = header.arg(1) or header.get("extension")
        party = ",".join(header.args[3:])
        if not party and direction is CallDirection.INBOUND:
            party = header.get("callerid")
        started = datetime.now(UTC)
        hops = parse_hops(header.arg(2) or None)  # the inbound INVITE's X-CallControl-Hops
        asked_at = _epoch_s(header.arg(3))  # when the dialplan asked (its clock)
        if asked_at is not None and self._intake_lag is not None:
            self._intake_lag.observe(asked_at)  # Asterisk's lateness: the shedding measure
        call_key = safe_id(header.get("uniqueid"))
        # The request's own task: its log lines (call_decided included) carry the call id.
        structlog.contextvars.bind_contextvars(call_id=call_key)
        routed = await self._router.route_number(direction, number, party or None, hops=hops)
        variables = plan_variables(
            routed.decision, voicemail_file=self._media.asterisk_file(f"vm-{call_key}")
        )
        self._remember(call_key, _Decided(routed, started))
        try:
            await session.command(set_variables(variables))  # CC_ACTION last (module notes)
        except BaseException:
            self._decided.pop(call_key, None)
            raise
        self.calls_decided += 1

    def _remember(self, call_key: str, decided: _Decided) -> None:
        self._decided[call_key] = decided
        while len(self._decided) > _MAX_PENDING:  # hangups that never came
            self._decided.popitem(last=False)

    async def _finish(self, call_key: str, facts: HangupFacts, decided: _Decided | None) -> None:
        if decided is None:
            decided = self._pushed_decision(facts)
        if decided is None:
            decided = await self._route_again(facts)
            if decided is None:
                log.warning("agi_hangup_unknown_call", call_id=call_key)
                return
        routed = decided.routed
        record = agi_call_record(
            call_id=call_key, direction=routed.direction, number=routed.number,
            caller=routed.caller, decision=routed.decision, started_at=decided.started_at,
            facts=facts,
        )  # fmt: skip
        log.info(
            "call_finished", call_id=call_key, disposition=record.disposition.value,
            cause=record.cause, reason=record.reject_reason, talk_ms=record.talk_ms,
            executor="agi",
        )  # fmt: skip
        await self._ledger.record_call(record)
        self.calls_finished += 1
        if record.disposition is Disposition.VOICEMAIL and record.number_id is not None:
            await self._deliver_voicemail(record, record.number_id, f"vm-{call_key}")

    async def read_reports(self, reports: HangupReports, every_s: float) -> None:
        """Turn the node's hangup reports into CDRs as they come: every ``every_s``
        while calls are few, every ``_BUSY_EVERY_S`` while lines keep coming (small
        batches: a batch's CDRs are built in one go, and decisions wait meanwhile)."""
        while True:
            taken = 0
            try:
                taken = await self.finish_reported(reports)
            except OSError as exc:
                log.warning("agi_reports_unreadable", folder=str(reports.folder), error=str(exc))
            await asyncio.sleep(min(every_s, _BUSY_EVERY_S) if taken else every_s)

    async def finish_reported(self, reports: HangupReports) -> int:
        """The CDRs of the reports not read yet; how many reports were read.

        The batch is committed only once every one of its CDRs is with the
        ledger (stored, or in the spool); if any failed (a call decided by an
        earlier engine, routed again while the database is away), the whole
        batch is read again next time: a CDR already stored is not stored twice."""
        # In the loop, not a worker thread: a local append-only file, a few KB per
        # batch (the thread hop cost more than the read).
        batch = reports.take()
        if batch.lines:
            now = datetime.now(UTC)
            results = await asyncio.gather(
                *(self._finish_line(line, now) for line in batch.lines), return_exceptions=True
            )
            failed = [result for result in results if isinstance(result, BaseException)]
            if failed:
                log.warning(
                    "agi_reports_held", reports=len(batch.lines), failed=len(failed),
                    error=f"{type(failed[0]).__name__}: {failed[0]}"[:300],
                )  # fmt: skip
                return 0
        reports.commit(batch)
        return len(batch.lines)

    async def _finish_line(self, line: str, received_at: datetime) -> None:
        parsed = parse_hangup_line(line, received_at=received_at)
        if parsed is None:
            log.warning("agi_report_unreadable", line=line[:200])
            return
        uniqueid, facts = parsed
        call_key = safe_id(uniqueid)
        await self._finish(call_key, facts, self._decided.pop(call_key, None))

    def _pushed_decision(self, facts: HangupFacts) -> _Decided | None:
        """A call that ran a pushed plan: its decision, with the call's own caller."""
        if facts.plan_version is None or self._pushed is None:
            return None
        routed = self._pushed.decision_of(facts.plan_version)
        if routed is None:
            return None
        return _Decided(
            replace(routed, caller=facts.party or None), facts.started_at or facts.ended_at
        )

    async def _route_again(self, facts: HangupFacts) -> _Decided | None:
        try:
            direction = CallDirection(facts.direction)
        except ValueError:
            return None
        routed = await self._router.route_number(direction, facts.number, facts.party or None)
        return _Decided(routed, facts.started_at or facts.ended_at)

    async def _deliver_voicemail(self, record: CallRecord, number_id: int, name: str) -> None:
        path = self._media.engine_file(name)
        try:
            audio = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            log.warning("voicemail_recording_missing", recording=str(path))
            return
        await self._voicemail.deliver(
            call_id=record.call_id, number_id=number_id, account_id=record.account_id,
            did=record.did, caller=record.caller,
            duration_s=max(0, len(audio) - _WAV_HEADER) // _BYTES_PER_SECOND, audio=audio,
        )  # fmt: skip
        await asyncio.to_thread(path.unlink, missing_ok=True)


def _epoch_s(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value > 0 and math.isfinite(value) else None
