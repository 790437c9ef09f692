"""The FastAGI executor: the dialplan asks, the same router decides, the
decision goes back as channel variables; the hangup handler's report becomes
the CDR (and the voicemail), written through the engine's spooled ports.

Rules kept here:
- decisions come from the same ``DirectionRouter`` as the ARI engine's, so
  both executors run the same pure plans (``decide_inbound``/``decide_outbound``);
- ``CC_ACTION`` is set last, alone, once every other variable was confirmed
  (those go in one ``EXEC MSet``: two round trips per decision): a request
  that fails half-way leaves the call undecided, and the dialplan retries,
  then answers 503 (never a half plan);
- the hangup request is answered (its connection closed) at once, so the
  caller's final response is not held up; the CDR write and the voicemail
  delivery run as supervised jobs. The ledger is the spooling one: a database
  outage costs a CDR nothing;
- a hangup for a call this process did not decide (it restarted in between)
  is routed again from the facts the dialplan passes (direction, number,
  party) for its CDR; the dialplan's ``CC_START`` keeps the real start time;
- a hangup report Asterisk could not deliver (the engine was down) is a line
  in the node's fallback file (``FILE()`` in the hangup handler);
  ``replay_fallback`` turns each into its CDR the same way. The file is renamed
  before it is read (Asterisk appends to a new one meanwhile) and removed only
  once every line was handed to the ledger; a crash in between replays it
  again, which is harmless: a CDR's id is its call's id and stored once.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog

from callcontrol.agi.plans import (
    HangupFacts,
    agi_call_record,
    parse_hangup_facts,
    plan_variables,
)
from callcontrol.agi.protocol import set_variable, set_variables
from callcontrol.agi.server import AgiHandler, AgiSession
from callcontrol.domain.call_events import CallRecord
from callcontrol.domain.contract import parse_hops, safe_id
from callcontrol.domain.vocabulary import CallDirection, Disposition
from callcontrol.engine.ports import CallLedger, VoicemailBox
from callcontrol.engine.routers import RoutedCall
from callcontrol.engine.supervisor import TaskSupervisor

log = structlog.get_logger(__name__)

VOICEMAIL_FOLDER = "voicemail-agi"
"""Under the media root: where the dialplan's Record() leaves a message."""
_MAX_PENDING = 100_000
_WAV_HEADER = 44
_BYTES_PER_SECOND = 16_000  # 8 kHz, 16-bit mono: what Record(...wav) writes


class IntakeObserver(Protocol):
    def observe(self, created_at: float) -> None: ...


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
        jobs: TaskSupervisor,
        media: MediaFolders,
        intake_lag: IntakeObserver | None = None,
    ) -> None:
        self._router = router
        self._intake_lag = intake_lag
        self._ledger = ledger
        self._voicemail = voicemail
        self._jobs = jobs
        self._media = media
        self._decided: OrderedDict[str, _Decided] = OrderedDict()
        self.calls_decided = 0
        self.calls_finished = 0

    def handlers(self) -> dict[str, AgiHandler]:
        """The scripts the dialplan asks for: ``agi://host:port/<script>``."""
        return {"inbound": self.inbound, "outbound": self.outbound, "hangup": self.hangup}

    def prepare(self) -> None:
        """Make the folder Record() writes into (Asterisk does not create it)."""
        (self._media.engine_root / VOICEMAIL_FOLDER).mkdir(parents=True, exist_ok=True)

    async def inbound(self, session: AgiSession) -> None:
        await self._decide(session, CallDirection.INBOUND)

    async def outbound(self, session: AgiSession) -> None:
        await self._decide(session, CallDirection.OUTBOUND)

    async def _decide(self, session: AgiSession, direction: CallDirection) -> None:
        header = session.header
        number = header.arg(1) or header.get("extension")
        party = header.arg(2)
        if not party and direction is CallDirection.INBOUND:
            party = header.get("callerid")
        started = datetime.now(UTC)
        hops = parse_hops(header.arg(3) or None)  # the inbound INVITE's X-CallControl-Hops
        asked_at = _epoch_s(header.arg(4))  # when the dialplan asked (its clock)
        if asked_at is not None and self._intake_lag is not None:
            self._intake_lag.observe(asked_at)  # Asterisk's lateness: the shedding measure
        routed = await self._router.route_number(direction, number, party or None, hops=hops)
        call_key = safe_id(header.get("uniqueid"))
        variables = plan_variables(
            routed.decision, voicemail_file=self._media.asterisk_file(f"vm-{call_key}")
        )
        action = variables.pop("CC_ACTION")
        self._remember(call_key, _Decided(routed, started))
        try:
            if variables:
                await session.command(set_variables(variables))
            await session.command(set_variable("CC_ACTION", action))
        except BaseException:
            self._decided.pop(call_key, None)
            raise
        self.calls_decided += 1

    def _remember(self, call_key: str, decided: _Decided) -> None:
        self._decided[call_key] = decided
        while len(self._decided) > _MAX_PENDING:  # hangups that never came
            self._decided.popitem(last=False)

    async def hangup(self, session: AgiSession) -> None:
        header = session.header
        call_key = safe_id(header.get("uniqueid"))
        facts = parse_hangup_facts(header.args, received_at=datetime.now(UTC))
        decided = self._decided.pop(call_key, None)
        self._jobs.spawn(self._finish(call_key, facts, decided), name=f"agi-cdr-{call_key}")

    async def _finish(self, call_key: str, facts: HangupFacts, decided: _Decided | None) -> None:
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

    async def replay_fallback(self, path: Path) -> int:
        """CDRs of the hangup reports the dialplan kept in ``path``; how many."""
        lines = await asyncio.to_thread(_take_lines, path)
        if lines is None:
            return 0
        now = datetime.now(UTC)
        for line in lines:
            uniqueid, _, rest = line.partition(",")
            if not uniqueid:
                continue
            facts = parse_hangup_facts(tuple(rest.split(",")), received_at=now)
            await self._finish(safe_id(uniqueid), facts, self._decided.pop(safe_id(uniqueid), None))
        await asyncio.to_thread(_taking(path).unlink)
        if lines:
            log.info("agi_fallback_replayed", path=str(path), calls=len(lines))
        return len(lines)

    async def replay_fallback_every(self, path: Path, seconds: float) -> None:
        while True:
            try:
                await self.replay_fallback(path)
            except OSError as exc:
                log.warning("agi_fallback_unreadable", path=str(path), error=str(exc))
            await asyncio.sleep(seconds)

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


def _taking(path: Path) -> Path:
    return path.with_name(path.name + ".replaying")


def _take_lines(path: Path) -> list[str] | None:
    """The fallback file's lines, renamed first (a file left by a replay that
    did not finish is taken as it is); None when there is none."""
    taken = _taking(path)
    if not taken.exists():
        try:
            path.rename(taken)
        except FileNotFoundError:
            return None
    return taken.read_text("utf-8", errors="replace").splitlines()
