"""Plans as dialplan variables, and what the dialplan reports back as a CDR. Pure.

The FastAGI executor carries out the same decisions as the ARI engine
(``decide_inbound``/``decide_outbound``), but Asterisk's dialplan does the
work (dialplan/extensions_callcontrol_agi.conf). The contract with it:

``plan_variables`` (set by the ``inbound``/``outbound`` request, in one
``EXEC MSet`` whose last variable is ``CC_ACTION``):
- ``CC_ACTION``: ``reject`` (``CC_CAUSE`` is the Q.850 cause to hang up with),
  ``forward`` (ring the ``CC_STEPS`` dial steps in order, then voicemail if
  ``CC_VOICEMAIL`` is 1), ``greet`` (the same after the greeting), ``present``
  (an outbound call: its CallerID first) or ``voicemail`` (nothing to ring);
  ``CC_PHASE`` and ``CC_STEP`` (1) come with it, so the dialplan spends no
  priority on them;
- ``CC_GREETING``: played after ``Answer()`` before ringing (empty: none);
- dial step *n*: ``CC_DIAL<n>`` (``PJSIP/a`` or ``PJSIP/a&PJSIP/b`` when
  simultaneous), ``CC_TIMEOUT<n>`` (seconds), ``CC_OPTS<n>`` (``L(<ms>)``: the
  PSTN credit cap, enforced by Asterisk itself). Sequential mode has one step
  per dialable leg, each with its own ring timeout; simultaneous mode one step
  whose timeout is the longest leg's (``Dial()`` has one timeout per call);
- ``CC_VM_GREETING``, ``CC_VM_MAX``, ``CC_VM_SILENCE``, ``CC_VM_FILE``;
- outbound: ``CC_CALLERID`` (the number shown) or ``CC_WITHHOLD=1``;
- ``CC_LEG_HOPS``: ``X-CallControl-Hops`` of every leg (the plan's hops + 1),
  added by ``Dial()``'s pre-dial handler (``callcontrol-agi-leg``).

``HangupFacts`` (the hangup handler's report line, ``REPORT_FIELDS``)
become the call's ``CallRecord`` in ``agi_call_record`` with the rules of
``domain/inbound_call.py``: any leg busy -> busy (17), else any no answer ->
no answer (19), else failed (34); the caller gone before the end -> abandoned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC as _UTC
from datetime import datetime, timedelta

from callcontrol.agi.protocol import mset_arguments
from callcontrol.domain.call_events import CallRecord, LegRecord
from callcontrol.domain.contract import (
    CAUSE_CONGESTION,
    CAUSE_DESTINATIONS_FAILED,
    CAUSE_NO_ANSWER,
    CAUSE_NORMAL_CLEARING,
    CAUSE_USER_BUSY,
)
from callcontrol.domain.rating import chargeable_seconds
from callcontrol.domain.routing import ForwardingPlan, PlannedLeg, Reject
from callcontrol.domain.vocabulary import (
    CallDirection,
    Disposition,
    ForwardingMode,
    LegOutcome,
)

ACTION_REJECT, ACTION_FORWARD, ACTION_VOICEMAIL = "reject", "forward", "voicemail"
ACTION_GREET, ACTION_PRESENT = "greet", "present"
PHASE_DONE, PHASE_GREETING, PHASE_RINGING = "done", "greeting", "ringing"
"""``CC_PHASE`` just before the dialplan's own final ``Hangup()``: anything
else at hang-up time means the caller went away first."""


def media_path(media: str) -> str:
    """``Playback()``'s argument for an engine media URI (``sound:/abs/path`` or
    ``sound:http://...``): the URI without its ``sound:`` scheme."""
    return media.removeprefix("sound:")


def dial_steps(plan: ForwardingPlan) -> list[tuple[PlannedLeg, ...]]:
    """The legs rung together, step by step."""
    legs = plan.dialable_legs
    if not legs:
        return []
    if plan.mode is ForwardingMode.SIMULTANEOUS:
        return [legs]
    return [(leg,) for leg in legs]


def _step_options(step: tuple[PlannedLeg, ...]) -> str:
    caps = [leg.max_talk_s for leg in step if leg.max_talk_s is not None]
    return f"L({min(caps) * 1000})" if caps else ""


def plan_variables(decision: ForwardingPlan | Reject, *, voicemail_file: str) -> dict[str, str]:
    """The channel variables that carry ``decision`` out (module notes)."""
    if isinstance(decision, Reject):
        return {"CC_CAUSE": str(decision.cause), "CC_PHASE": PHASE_DONE, "CC_ACTION": ACTION_REJECT}
    steps = dial_steps(decision)
    variables = {
        "CC_ACTION": _action(decision, steps),
        "CC_STEPS": str(len(steps)),
        "CC_LEG_HOPS": str(decision.hops + 1),
    }
    if steps:
        greet = variables["CC_ACTION"] == ACTION_GREET
        variables |= {"CC_STEP": "1", "CC_PHASE": PHASE_GREETING if greet else PHASE_RINGING}
    if decision.greeting_media:
        variables["CC_GREETING"] = media_path(decision.greeting_media)
    for index, step in enumerate(steps, start=1):
        variables[f"CC_DIAL{index}"] = "&".join(leg.endpoint for leg in step)
        variables[f"CC_TIMEOUT{index}"] = str(max(leg.ring_timeout_s for leg in step))
        options = _step_options(step)
        if options:
            variables[f"CC_OPTS{index}"] = options
    if decision.voicemail is not None:
        variables |= {
            "CC_VOICEMAIL": "1",
            "CC_VM_GREETING": media_path(decision.voicemail.greeting_media),
            "CC_VM_MAX": str(decision.voicemail.max_seconds),
            "CC_VM_SILENCE": str(decision.voicemail.max_silence_seconds),
            "CC_VM_FILE": voicemail_file,
        }
    if decision.direction is CallDirection.OUTBOUND:
        if decision.withhold_caller_id or decision.caller_id is None:
            variables["CC_WITHHOLD"] = "1"
        else:
            variables["CC_CALLERID"] = decision.caller_id
    variables["CC_ACTION"] = variables.pop("CC_ACTION")  # last: the dialplan's "decided"
    return variables


def _action(plan: ForwardingPlan, steps: list[tuple[PlannedLeg, ...]]) -> str:
    """The dialplan's entry (``callcontrol-agi-run``): each skips what the plan
    does not need, a priority spared per step left out."""
    if not steps:
        return ACTION_VOICEMAIL
    if plan.direction is CallDirection.OUTBOUND:
        return ACTION_PRESENT  # the CallerID shown, or anonymous
    return ACTION_GREET if plan.greeting_media else ACTION_FORWARD


# ---- plans pushed into Asterisk ---------------------------------------------------

GENERATION_DIGITS = 10
"""A pushed plan's value starts with the publishing engine's generation (a
random number, zero-padded to ten digits) and ``|``: the dialplan compares the
first eleven characters with the generation the engine vouches for."""
_PER_CALL = ("CC_VM_FILE", "CC_LEG_HOPS")  # the dialplan fills these in per call


def standing_plan_value(generation: int, version: int, decision: ForwardingPlan | Reject) -> str:
    """The AstDB value that lets the dialplan carry ``decision`` out with no
    request: ``<generation>|`` and ``MSet``'s argument, the variables of
    ``plan_variables`` less the per-call ones, with ``CC_PLAN`` (``version``:
    the CDR's key to the decision) first and ``CC_ACTION`` last."""
    variables = plan_variables(decision, voicemail_file="")
    for name in _PER_CALL:
        variables.pop(name, None)
    prefix = f"{generation:0{GENERATION_DIGITS}d}|"
    return prefix + mset_arguments({"CC_PLAN": str(version), **variables})


# ---- what the hangup handler reports ---------------------------------------------


@dataclass(frozen=True, slots=True)
class StepResult:
    """One ``Dial()`` as the dialplan saw it."""

    started_at: datetime
    status: str  # DIALSTATUS: ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL
    dialed_ms: int
    answered_ms: int
    peer: str  # DIALEDPEERNUMBER: the answered peer, "callcontrol-external/sip:..."


@dataclass(frozen=True, slots=True)
class HangupFacts:
    steps: tuple[StepResult, ...]
    phase: str  # CC_PHASE at hang-up time
    hangup_cause: int | None
    voicemail_at: datetime | None
    ended_at: datetime
    started_at: datetime | None = None
    direction: str = ""
    number: str = ""
    party: str = ""
    plan_version: int | None = None
    """The pushed plan the dialplan ran (``standing_plan_value``); None: it asked."""


_OUTCOME_OF_STATUS = {
    "ANSWER": (LegOutcome.ANSWERED, CAUSE_NORMAL_CLEARING),
    "BUSY": (LegOutcome.BUSY, CAUSE_USER_BUSY),
    "NOANSWER": (LegOutcome.NO_ANSWER, CAUSE_NO_ANSWER),
    "CANCEL": (LegOutcome.CANCELLED, None),
}


def _leg_outcome(status: str) -> tuple[LegOutcome, int | None]:
    return _OUTCOME_OF_STATUS.get(status, (LegOutcome.FAILED, CAUSE_CONGESTION))


@dataclass(slots=True)
class _LegTimes:
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: LegOutcome = LegOutcome.SKIPPED
    cause: int | None = None


def _peer_is(leg: PlannedLeg, peer: str) -> bool:
    return leg.endpoint.removeprefix("PJSIP/") == peer or leg.endpoint == peer


def _legs_of_step(
    step: tuple[PlannedLeg, ...], result: StepResult, times: dict[int, _LegTimes]
) -> None:
    ended = result.started_at + timedelta(milliseconds=result.dialed_ms)
    answered_at = ended - timedelta(milliseconds=result.answered_ms)
    for leg in step:
        slot = times[leg.position]
        slot.started_at, slot.ended_at = result.started_at, ended
        if result.status == "ANSWER":
            won = len(step) == 1 or _peer_is(leg, result.peer)
            if won:
                slot.outcome, slot.cause = LegOutcome.ANSWERED, CAUSE_NORMAL_CLEARING
                slot.answered_at = answered_at
            else:
                slot.outcome, slot.cause = LegOutcome.CANCELLED, None
                slot.ended_at = answered_at
        else:
            slot.outcome, slot.cause = _leg_outcome(result.status)


def agi_call_record(
    *,
    call_id: str,
    direction: CallDirection,
    number: str,
    caller: str | None,
    decision: ForwardingPlan | Reject,
    started_at: datetime,
    facts: HangupFacts,
) -> CallRecord:
    """The CDR of a call the dialplan carried out."""
    ended = max(facts.ended_at, started_at)
    if isinstance(decision, Reject):
        return CallRecord(
            call_id=call_id, direction=direction, did=number, number_id=decision.number_id,
            account_id=decision.account_id, caller=caller, started_at=started_at,
            answered_at=None, ended_at=ended, disposition=Disposition.REJECTED,
            cause=decision.cause, reject_reason=decision.reason, answered_position=None,
            ring_ms=0, talk_ms=0, legs=(),
        )  # fmt: skip
    times = {leg.position: _LegTimes() for leg in decision.legs}
    for step, result in zip(dial_steps(decision), facts.steps, strict=False):
        _legs_of_step(step, result, times)
    winner = next((leg for leg in decision.legs if times[leg.position].answered_at), None)
    answered_at = times[winner.position].answered_at if winner else facts.voicemail_at
    disposition, cause = _disposition(decision, times, facts, winner is not None)
    first_ring = min((t.started_at for t in times.values() if t.started_at), default=None)
    legs = tuple(
        _leg_record(leg, times[leg.position], won=leg is winner, ended=ended)
        for leg in decision.legs
    )
    return CallRecord(
        call_id=call_id, direction=direction, did=number, number_id=decision.number_id,
        account_id=decision.account_id, caller=caller, started_at=started_at,
        answered_at=answered_at, ended_at=ended, disposition=disposition, cause=cause,
        reject_reason=None, answered_position=winner.position if winner else None,
        ring_ms=_ms(first_ring, answered_at or ended) if first_ring else 0,
        talk_ms=_ms(answered_at, ended) if answered_at else 0, legs=legs,
        caller_answered=bool(decision.greeting_media) or facts.voicemail_at is not None,
    )  # fmt: skip


def _disposition(
    plan: ForwardingPlan, times: dict[int, _LegTimes], facts: HangupFacts, answered: bool
) -> tuple[Disposition, int | None]:
    if answered:
        return Disposition.ANSWERED, facts.hangup_cause or CAUSE_NORMAL_CLEARING
    if facts.voicemail_at is not None:
        return Disposition.VOICEMAIL, CAUSE_NORMAL_CLEARING
    if facts.phase != PHASE_DONE:
        return Disposition.ABANDONED, facts.hangup_cause or CAUSE_NORMAL_CLEARING
    outcomes = {t.outcome for t in times.values()}
    if LegOutcome.BUSY in outcomes:
        return Disposition.BUSY, CAUSE_USER_BUSY
    if LegOutcome.NO_ANSWER in outcomes:
        return Disposition.NO_ANSWER, CAUSE_NO_ANSWER
    return Disposition.FAILED, CAUSE_DESTINATIONS_FAILED


def _leg_record(leg: PlannedLeg, times: _LegTimes, *, won: bool, ended: datetime) -> LegRecord:
    outcome = LegOutcome.SKIPPED if leg.skipped else times.outcome
    leg_end = times.ended_at
    if won:
        leg_end = ended  # the far end talked until the call ended
    billed = 0
    if won and times.answered_at is not None:
        billed = chargeable_seconds(ended - times.answered_at, cap_s=leg.max_talk_s)
    return LegRecord(
        position=leg.position, type=leg.type, target=leg.target, channel_id=None,
        started_at=times.started_at, answered_at=times.answered_at,
        ended_at=leg_end if times.started_at else None, outcome=outcome,
        cause=times.cause, billed_seconds=billed, rate=leg.rate,
    )  # fmt: skip


def _ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))


# ---- the hangup report's fields ---------------------------------------------------

REPORT_FIELDS = (
    "UNIQUEID", "CC_STEP", "CC_T1", "CC_R1", "CC_T2", "CC_R2", "DIALSTATUS", "DIALEDTIME_MS",
    "ANSWEREDTIME_MS", "DIALEDPEERNUMBER", "HANGUPCAUSE", "CC_PHASE", "CC_VM_AT", "CC_NOW",
    "CC_START", "CC_DIRECTION", "CC_NUMBER", "CC_PLAN", "CC_PARTY",
)  # fmt: skip
"""The hangup handler's report line (``callcontrol/agi/reports.py``): these
variables, comma-separated, in this order (the dialplan lists the same names).
``CC_T<n>``: when step *n* began; ``CC_R<n>``: ``STATUS|dialed_ms|answered_ms|peer``
once its ``Dial()`` returned; ``CC_START``, ``CC_DIRECTION``, ``CC_NUMBER``,
``CC_PARTY`` (caller or SIP account) let an engine that did not take the
decision (restarted in between) route the call again for its CDR. A ``Dial()``
the caller ended (hang-up while ringing or talking) never returns to the
dialplan: its result is the channel's own DIALSTATUS, DIALEDTIME_MS,
ANSWEREDTIME_MS and DIALEDPEERNUMBER at hang-up time. ``CC_PLAN`` is ``=``
and the version of the pushed plan the call ran (``=`` alone: the engine was
asked); a line without it (written before it existed) is read as before.
``CC_PARTY`` is last: a caller number with a comma in it stays whole."""
PLAN_MARK = "="
HANGUP_ARGS = REPORT_FIELDS[1:]
"""The facts after the call's ``UNIQUEID``."""


def parse_hangup_line(line: str, *, received_at: datetime) -> tuple[str, HangupFacts] | None:
    """The call's id and facts from one report line; None for a line with no id."""
    uniqueid, _, rest = line.strip("\r").partition(",")
    if not uniqueid:
        return None
    fields = tuple(rest.split(",", len(HANGUP_ARGS) - 1))
    return uniqueid, parse_hangup_facts(fields, received_at=received_at)


def _epoch(raw: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(raw), tz=_UTC) if raw else None
    except (ValueError, OverflowError):
        return None


def _int(raw: str) -> int:
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


def _step(started: datetime | None, fields: list[str]) -> StepResult | None:
    if started is None:
        return None
    status, dialed, answered, peer = [*fields, "", "", "", ""][:4]
    return StepResult(started, status or "CANCEL", _int(dialed), _int(answered), peer)


def parse_hangup_facts(args: tuple[str, ...], *, received_at: datetime) -> HangupFacts:
    """``HangupFacts`` from a report's fields after its ``UNIQUEID`` (``HANGUP_ARGS``)."""
    values = dict(zip(HANGUP_ARGS, (*args, *([""] * len(HANGUP_ARGS))), strict=False))
    plan = values["CC_PLAN"]
    if plan.startswith(PLAN_MARK):
        plan = plan.removeprefix(PLAN_MARK)
    else:  # a line of the format before CC_PLAN: what was read as it is the party's start
        values["CC_PARTY"] = ",".join(part for part in (plan, values["CC_PARTY"]) if part)
        plan = ""
    live = [values[name] for name in ("DIALSTATUS", "DIALEDTIME_MS", "ANSWEREDTIME_MS")]
    live.append(values["DIALEDPEERNUMBER"])
    steps: list[StepResult] = []
    for index in (1, 2):
        done = values[f"CC_R{index}"]
        fields = done.split("|", 3) if done else live if values["CC_STEP"] == str(index) else []
        step = _step(_epoch(values[f"CC_T{index}"]), fields)
        if step is not None:
            steps.append(step)
    cause = values["HANGUPCAUSE"]
    return HangupFacts(
        steps=tuple(steps),
        phase=values["CC_PHASE"],
        hangup_cause=int(cause) if cause.isdigit() and int(cause) > 0 else None,
        voicemail_at=_epoch(values["CC_VM_AT"]),
        ended_at=_epoch(values["CC_NOW"]) or received_at,
        started_at=_epoch(values["CC_START"]),
        direction=values["CC_DIRECTION"],
        number=values["CC_NUMBER"],
        party=values["CC_PARTY"],
        plan_version=int(plan) if plan.isdigit() else None,
    )
