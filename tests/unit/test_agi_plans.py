"""The FastAGI executor's pure parts: plans as dialplan variables, the hangup
handler's report as a CDR, the AGI wire format (no sockets, no mocks)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from callcontrol.agi.plans import (
    GENERATION_DIGITS,
    HANGUP_ARGS,
    PHASE_DONE,
    REPORT_FIELDS,
    HangupFacts,
    StepResult,
    agi_call_record,
    parse_hangup_facts,
    parse_hangup_line,
    plan_variables,
    standing_plan_value,
)
from callcontrol.agi.protocol import (
    AgiCommandError,
    AgiHeader,
    AgiProtocolError,
    AgiReply,
    quote,
    set_variable,
    set_variables,
)
from callcontrol.domain.call_events import CallRecord
from callcontrol.domain.callerid import E164, parse_e164
from callcontrol.domain.outbound import OutboundPolicy, SipAccountFacts, decide_outbound
from callcontrol.domain.rating import Rate
from callcontrol.domain.routing import (
    DestinationFacts,
    ForwardingPlan,
    NumberSnapshot,
    Reject,
    RoutingPolicy,
    decide_inbound,
)
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    Disposition,
    ForwardingMode,
    LegOutcome,
    NumberKind,
    NumberState,
)

T0 = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
SIP_A = DestinationFacts(1, DestinationType.SIP_URI, "sip:alice@127.0.0.3:5080", 20)
SIP_B = DestinationFacts(2, DestinationType.IP, "sip:100@127.0.0.4:5080", 15)
PSTN = DestinationFacts(2, DestinationType.PSTN, "+4915112345678", 25, rate=Rate("49", 12, "EUR"))
ACTIVE = NumberSnapshot(
    number_id=7, account_id=3, e164="+4930123456", kind=NumberKind.VOICE,
    state=NumberState.ACTIVE, balance_minor=600, currency="EUR",
    mode=ForwardingMode.SEQUENTIAL, destinations=(SIP_A, SIP_B),
)  # fmt: skip
VM_FILE = "/srv/callcontrol/media/voicemail-agi/vm-1"


def plan(snapshot: NumberSnapshot = ACTIVE) -> ForwardingPlan:
    decision = decide_inbound(snapshot, caller_id="+4915112345678", now=T0, policy=RoutingPolicy())
    assert isinstance(decision, ForwardingPlan)
    return decision


# ---- plan -> variables --------------------------------------------------------------


def test_a_rejection_is_its_cause_and_nothing_else() -> None:
    assert plan_variables(Reject(21, "suspended"), voicemail_file=VM_FILE) == {
        "CC_ACTION": "reject",
        "CC_CAUSE": "21",
        "CC_PHASE": PHASE_DONE,  # the dialplan's own end: not an abandoned call
    }


def test_sequential_legs_are_one_dial_step_each_with_their_own_ring_timeout() -> None:
    variables = plan_variables(plan(), voicemail_file=VM_FILE)
    assert variables == {
        "CC_ACTION": "forward",
        "CC_STEPS": "2",
        "CC_LEG_HOPS": "1",
        "CC_STEP": "1",
        "CC_PHASE": "ringing",
        "CC_DIAL1": "PJSIP/callcontrol-external/sip:alice@127.0.0.3:5080",
        "CC_TIMEOUT1": "20",
        "CC_DIAL2": "PJSIP/callcontrol-external/sip:100@127.0.0.4:5080",
        "CC_TIMEOUT2": "15",
    }


def test_simultaneous_legs_ring_in_one_dial_with_the_longest_timeout() -> None:
    variables = plan_variables(
        plan(replace(ACTIVE, mode=ForwardingMode.SIMULTANEOUS)), voicemail_file=VM_FILE
    )
    assert variables["CC_STEPS"] == "1" and variables["CC_TIMEOUT1"] == "20"
    assert variables["CC_DIAL1"] == (
        "PJSIP/callcontrol-external/sip:alice@127.0.0.3:5080"
        "&PJSIP/callcontrol-external/sip:100@127.0.0.4:5080"
    )


def test_every_leg_carries_the_hops_the_call_came_with_plus_one() -> None:
    decision = decide_inbound(
        ACTIVE, caller_id="+4915112345678", now=T0, policy=RoutingPolicy(), hops=2
    )
    assert isinstance(decision, ForwardingPlan)
    assert plan_variables(decision, voicemail_file=VM_FILE)["CC_LEG_HOPS"] == "3"


def test_a_pstn_leg_is_capped_by_dial_L_at_the_seconds_the_balance_pays() -> None:
    forwarding = plan(replace(ACTIVE, destinations=(PSTN,)))
    cap_s = forwarding.legs[0].max_talk_s
    assert cap_s is not None and cap_s > 0
    variables = plan_variables(forwarding, voicemail_file=VM_FILE)
    assert variables["CC_DIAL1"] == "PJSIP/+4915112345678@callcontrol-pstn"
    assert variables["CC_OPTS1"] == f"L({cap_s * 1000})"


def test_the_action_is_the_dialplan_entry_that_skips_what_the_plan_does_not_need() -> None:
    greeted = plan_variables(
        plan(replace(ACTIVE, greeting_media="sound:/m/hello")), voicemail_file=VM_FILE
    )
    assert (greeted["CC_ACTION"], greeted["CC_PHASE"], greeted["CC_STEP"]) == (
        "greet", "greeting", "1",
    )  # fmt: skip
    assert plan_variables(plan(), voicemail_file=VM_FILE)["CC_ACTION"] == "forward"


def test_greeting_and_voicemail_become_playable_paths_and_record_limits() -> None:
    snapshot = replace(
        ACTIVE,
        destinations=(),
        greeting_media="sound:/srv/callcontrol/media/g/hello",
        voicemail_enabled=True,
    )
    variables = plan_variables(plan(snapshot), voicemail_file=VM_FILE)
    assert variables["CC_ACTION"] == "voicemail" and variables["CC_STEPS"] == "0"
    assert variables["CC_GREETING"] == "/srv/callcontrol/media/g/hello"
    assert variables["CC_VM_GREETING"] == "vm-intro"
    assert (variables["CC_VM_MAX"], variables["CC_VM_SILENCE"]) == ("120", "5")
    assert variables["CC_VM_FILE"] == VM_FILE and variables["CC_VOICEMAIL"] == "1"


def test_an_outbound_call_shows_the_decided_caller_id_or_withholds_it() -> None:
    facts = SipAccountFacts(
        account_id=3, login="alice", balance_minor=500, currency="EUR",
        presented_number=None, presented_number_id=None, callerid_service=False,
    )  # fmt: skip
    decision = decide_outbound(
        facts, _e164("+4930555"), Rate("49", 6, "EUR"), policy=OutboundPolicy()
    )
    assert isinstance(decision, ForwardingPlan)
    assert plan_variables(decision, voicemail_file=VM_FILE)["CC_WITHHOLD"] == "1"
    shown = replace(decision, caller_id="+4930123456", withhold_caller_id=False)
    variables = plan_variables(shown, voicemail_file=VM_FILE)
    assert variables["CC_CALLERID"] == "+4930123456" and "CC_WITHHOLD" not in variables
    assert variables["CC_ACTION"] == "present", "an outbound call sets its CallerID first"


def _e164(text: str) -> E164:
    return parse_e164(text)


# ---- the hangup report -> CDR ---------------------------------------------------------


def record(decision: ForwardingPlan | Reject, facts: HangupFacts) -> CallRecord:
    return agi_call_record(
        call_id="c1", direction=CallDirection.INBOUND, number="+4930123456",
        caller="+4915112345678", decision=decision, started_at=T0, facts=facts,
    )  # fmt: skip


def step(
    at_s: float, status: str, dialed_ms: int, answered_ms: int = 0, peer: str = ""
) -> StepResult:
    return StepResult(T0 + timedelta(seconds=at_s), status, dialed_ms, answered_ms, peer)


def facts(
    *steps: StepResult, end_s: float, phase: str = PHASE_DONE, vm_s: float | None = None
) -> HangupFacts:
    return HangupFacts(
        steps=steps, phase=phase, hangup_cause=16,
        voicemail_at=T0 + timedelta(seconds=vm_s) if vm_s is not None else None,
        ended_at=T0 + timedelta(seconds=end_s),
    )  # fmt: skip


def test_busy_then_answered_is_an_answered_call_with_both_legs_and_the_talk_time() -> None:
    cdr = record(plan(), facts(step(0.1, "BUSY", 200), step(0.4, "ANSWER", 3600, 3000), end_s=4.0))
    assert cdr.disposition is Disposition.ANSWERED and cdr.answered_position == 2
    assert [leg.outcome for leg in cdr.legs] == [LegOutcome.BUSY, LegOutcome.ANSWERED]
    assert cdr.legs[0].cause == 17
    assert cdr.talk_ms == 3000 and cdr.ring_ms == 900


def test_every_leg_busy_is_busy_486_and_no_answer_beats_failed() -> None:
    busy = record(plan(), facts(step(0, "BUSY", 100), step(0.2, "BUSY", 100), end_s=0.5))
    assert (busy.disposition, busy.cause) == (Disposition.BUSY, 17)
    missed = record(
        plan(), facts(step(0, "CONGESTION", 100), step(0.2, "NOANSWER", 15000), end_s=16)
    )
    assert (missed.disposition, missed.cause) == (Disposition.NO_ANSWER, 19)
    failed = record(plan(), facts(step(0, "CHANUNAVAIL", 10), step(0.1, "CONGESTION", 10), end_s=1))
    assert (failed.disposition, failed.cause) == (Disposition.FAILED, 42)  # 503, final at the edge


def test_the_caller_gone_while_ringing_is_abandoned() -> None:
    cdr = record(plan(), facts(step(0, "CANCEL", 2000), end_s=2.0, phase="ringing"))
    assert cdr.disposition is Disposition.ABANDONED
    assert cdr.legs[0].outcome is LegOutcome.CANCELLED


def test_in_simultaneous_mode_the_peer_asterisk_names_is_the_winner() -> None:
    simultaneous = plan(replace(ACTIVE, mode=ForwardingMode.SIMULTANEOUS))
    peer = "callcontrol-external/sip:100@127.0.0.4:5080"
    cdr = record(simultaneous, facts(step(0, "ANSWER", 5000, 4000, peer), end_s=5.0))
    assert cdr.answered_position == 2
    assert [leg.outcome for leg in cdr.legs] == [LegOutcome.CANCELLED, LegOutcome.ANSWERED]


def test_a_capped_pstn_leg_is_billed_at_most_its_cap() -> None:
    forwarding = plan(replace(ACTIVE, destinations=(PSTN,)))
    cap_s = forwarding.legs[0].max_talk_s
    assert cap_s is not None
    talk_ms = cap_s * 1000 + 6  # Asterisk's L() tears down a few ms late
    cdr = record(
        forwarding, facts(step(0, "ANSWER", talk_ms + 500, talk_ms), end_s=(talk_ms + 500) / 1000)
    )
    assert cdr.legs[0].billed_seconds == cap_s


def test_a_voicemail_left_is_a_voicemail_call_answered_when_recording_began() -> None:
    snapshot = replace(ACTIVE, voicemail_enabled=True)
    cdr = record(
        plan(snapshot),
        facts(step(0, "NOANSWER", 20000), step(20, "NOANSWER", 15000), end_s=50, vm_s=38),
    )
    assert cdr.disposition is Disposition.VOICEMAIL and cdr.caller_answered
    assert cdr.talk_ms == 12000


def test_a_rejection_keeps_its_reason_and_the_number_it_is_counted_for() -> None:
    cdr = record(Reject(21, "suspended", number_id=7, account_id=3), facts(end_s=0.05))
    assert cdr.disposition is Disposition.REJECTED and cdr.cause == 21
    assert (cdr.reject_reason, cdr.number_id, cdr.account_id) == ("suspended", 7, 3)


def test_hangup_arguments_take_a_dial_the_caller_ended_from_the_live_variables() -> None:
    values = dict.fromkeys(HANGUP_ARGS, "")
    t1 = T0.timestamp()
    values |= {
        "CC_STEP": "2", "CC_T1": f"{t1:.3f}", "CC_R1": "BUSY|150||",
        "CC_T2": f"{t1 + 0.3:.3f}", "DIALSTATUS": "ANSWER", "DIALEDTIME_MS": "4000",
        "ANSWEREDTIME_MS": "3500", "DIALEDPEERNUMBER": "callcontrol-external/sip:x@h:5080",
        "HANGUPCAUSE": "16", "CC_PHASE": "ringing", "CC_NOW": f"{t1 + 4.3:.3f}",
        "CC_START": f"{t1 - 0.01:.3f}", "CC_DIRECTION": "inbound", "CC_NUMBER": "4930123456",
        "CC_PARTY": "4915112345678",
    }  # fmt: skip
    parsed = parse_hangup_facts(tuple(values[name] for name in HANGUP_ARGS), received_at=T0)
    assert [s.status for s in parsed.steps] == ["BUSY", "ANSWER"]
    assert parsed.steps[1].answered_ms == 3500 and parsed.steps[1].peer.endswith("h:5080")
    assert parsed.ended_at == T0 + timedelta(seconds=4.3)
    assert (parsed.direction, parsed.number, parsed.party) == (
        "inbound",
        "4930123456",
        "4915112345678",
    )
    assert parsed.hangup_cause == 16


def test_a_report_line_gives_the_call_id_and_keeps_a_caller_with_commas_whole() -> None:
    values = dict.fromkeys(REPORT_FIELDS, "")
    values |= {"UNIQUEID": "1764694800.17", "CC_PHASE": "done", "CC_NUMBER": "+4930123456",
               "CC_PARTY": "49,151,12"}  # fmt: skip
    parsed = parse_hangup_line(",".join(values.values()), received_at=T0)
    assert parsed is not None
    uniqueid, facts = parsed
    assert uniqueid == "1764694800.17"
    assert (facts.phase, facts.number, facts.party) == ("done", "+4930123456", "49,151,12")
    assert parse_hangup_line(",done", received_at=T0) is None, "no call id: not a report"


def test_a_report_line_names_the_pushed_plan_it_ran_and_an_older_line_still_reads() -> None:
    values = dict.fromkeys(REPORT_FIELDS, "")
    values |= {"UNIQUEID": "1764694800.18", "CC_PHASE": "done", "CC_NUMBER": "+4930123456",
               "CC_PLAN": "=42", "CC_PARTY": "peter"}  # fmt: skip
    parsed = parse_hangup_line(",".join(values.values()), received_at=T0)
    assert parsed is not None and parsed[1].plan_version == 42 and parsed[1].party == "peter"
    values["CC_PLAN"] = "="  # the engine was asked
    parsed = parse_hangup_line(",".join(values.values()), received_at=T0)
    assert parsed is not None and parsed[1].plan_version is None and parsed[1].party == "peter"
    older = {name: value for name, value in values.items() if name != "CC_PLAN"}
    older["CC_PARTY"] = "49,151,12"  # a line written before CC_PLAN existed
    parsed = parse_hangup_line(",".join(older.values()), received_at=T0)
    assert parsed is not None and parsed[1].plan_version is None
    assert (parsed[1].number, parsed[1].party) == ("+4930123456", "49,151,12")


def test_a_standing_plan_is_the_generation_and_msets_arguments_less_the_per_call_ones() -> None:
    value = standing_plan_value(1764694800, 7, plan(replace(ACTIVE, voicemail_enabled=True)))
    generation, _, arguments = value.partition("|")
    assert generation == "1764694800" and len(generation) == GENERATION_DIGITS
    pairs = [pair.split("=", 1) for pair in arguments.split(",")]
    names = [name for name, _ in pairs]
    assert names[0] == "CC_PLAN" and pairs[0][1] == "7" and names[-1] == "CC_ACTION"
    assert "CC_VM_FILE" not in names and "CC_LEG_HOPS" not in names, "filled in per call"
    assert dict(pairs)["CC_DIAL1"] == "PJSIP/callcontrol-external/sip:alice@127.0.0.3:5080"
    assert standing_plan_value(5, 1, Reject(21, "suspended")) == (
        "0000000005|CC_PLAN=1,CC_CAUSE=21,CC_PHASE=done,CC_ACTION=reject"
    )


def test_hangup_arguments_missing_or_garbled_still_give_facts() -> None:
    parsed = parse_hangup_facts(("x", "not-a-time", "BUSY|a|b"), received_at=T0)
    assert parsed.steps == () and parsed.ended_at == T0 and parsed.hangup_cause is None


# ---- the wire format --------------------------------------------------------------------


def test_a_header_gives_the_script_its_arguments_and_unknown_as_empty() -> None:
    header = AgiHeader.parse(
        [
            "agi_request: agi://127.0.0.1:4573/inbound?x=1",
            "agi_network_script: inbound?x=1",
            "agi_uniqueid: 1733115600.42",
            "agi_callerid: unknown",
            "agi_arg_1: 4930123456",
            "agi_arg_2: ",
            "agi_arg_3: three",
        ]
    )
    assert header.script == "inbound" and header.get("callerid") == ""
    assert header.args == ("4930123456", "", "three") and header.arg(4) == ""


def test_a_header_line_that_is_not_agi_is_a_protocol_error() -> None:
    with pytest.raises(AgiProtocolError):
        AgiHeader.parse(["GET / HTTP/1.1"])
    with pytest.raises(AgiProtocolError):
        AgiHeader.parse(["agi_channel: PJSIP/x"])  # no agi_request


def test_replies_parse_their_result_and_data_and_errors_raise() -> None:
    reply = AgiReply.parse("200 result=1 (hello world)")
    assert (reply.result, reply.data) == ("1", "hello world")
    assert AgiReply.parse("200 result=0").data is None
    with pytest.raises(AgiCommandError) as refused:
        AgiReply.parse("511 Command Not Permitted on a dead channel or intercept routine")
    assert refused.value.code == 511
    with pytest.raises(AgiProtocolError):
        AgiReply.parse("hello")


def test_values_are_quoted_so_they_stay_one_argument() -> None:
    assert quote('a "b" c\\d') == '"a \\"b\\" c\\\\d"'
    assert set_variable("CALLERID(all)", '"" <+49>') == 'SET VARIABLE CALLERID(all) "\\"\\" <+49>"'
    with pytest.raises(ValueError):
        set_variable("A B", "x")


def test_a_whole_plan_is_one_mset_whose_commas_stay_in_their_values() -> None:
    command = set_variables({"CC_DIAL1": "PJSIP/a&PJSIP/b", "CC_X": "a,b", "CC_OPTS1": "L(3000)"})
    assert command == 'EXEC MSet "CC_DIAL1=PJSIP/a&PJSIP/b,CC_X=a\\\\,b,CC_OPTS1=L(3000)"'
