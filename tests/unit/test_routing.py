"""The routing decision: DID facts in, reject or plan out (no I/O, no mocks)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from callcontrol.domain.rating import Rate
from callcontrol.domain.routing import (
    DestinationFacts,
    EndpointNames,
    ForwardingPlan,
    NumberSnapshot,
    Reject,
    RoutingPolicy,
    decide_inbound,
    leg_endpoint,
)
from callcontrol.domain.vocabulary import DestinationType, ForwardingMode, NumberKind, NumberState

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = RoutingPolicy()

SIP = DestinationFacts(1, DestinationType.SIP_URI, "sip:alice@127.0.0.3:5080", 20)
PSTN = DestinationFacts(2, DestinationType.PSTN, "+4915112345678", 25, rate=Rate("49", 12, "EUR"))

ACTIVE = NumberSnapshot(
    number_id=7,
    account_id=3,
    e164="+4930123456",
    kind=NumberKind.VOICE,
    state=NumberState.ACTIVE,
    balance_minor=600,
    currency="EUR",
    mode=ForwardingMode.SIMULTANEOUS,
    destinations=(SIP, PSTN),
)


def decide(snapshot: NumberSnapshot | None) -> Reject | ForwardingPlan:
    return decide_inbound(snapshot, caller_id="+441234567", now=NOW, policy=POLICY)


def test_unknown_number_is_rejected_as_unallocated_404() -> None:
    assert decide(None) == Reject(1, "unknown_number")


OWNED = {"number_id": 7, "account_id": 3}
"""A refusal of a number its account still holds is counted for that number."""


def test_numbers_not_in_service_are_rejected_as_unallocated() -> None:
    for state in (
        NumberState.AVAILABLE,
        NumberState.RESERVED,
        NumberState.PENDING,
        NumberState.DISCONNECTED,
    ):
        decision = decide(replace(ACTIVE, state=state))
        # Not the account's to count any more (or not yet): no number, no account.
        assert decision == Reject(1, "not_in_service"), state


def test_sms_once_numbers_take_no_calls() -> None:
    assert decide(replace(ACTIVE, kind=NumberKind.SMS_ONCE)) == Reject(1, "not_voice", **OWNED)


def test_suspended_number_is_rejected_distinctly_with_call_rejected_403() -> None:
    decision = decide(replace(ACTIVE, state=NumberState.SUSPENDED))
    assert decision == Reject(21, "suspended", **OWNED)


def test_negative_balance_rejects_even_if_the_state_was_not_updated_yet() -> None:
    assert decide(replace(ACTIVE, balance_minor=-1)) == Reject(21, "suspended", **OWNED)


def test_a_test_number_takes_calls_only_within_its_hour() -> None:
    testing = replace(ACTIVE, state=NumberState.TESTING, test_expires_at=NOW + timedelta(minutes=1))
    assert isinstance(decide(testing), ForwardingPlan)
    expired = replace(testing, test_expires_at=NOW)
    assert decide(expired) == Reject(1, "test_expired")


def test_active_number_gets_a_plan_with_endpoints_and_the_pstn_cap() -> None:
    plan = decide(ACTIVE)
    assert isinstance(plan, ForwardingPlan)
    assert plan.mode is ForwardingMode.SIMULTANEOUS
    sip, pstn = plan.legs
    assert sip.endpoint == "PJSIP/callcontrol-external/sip:alice@127.0.0.3:5080"
    assert not sip.skipped and sip.max_talk_s is None
    assert pstn.endpoint == "PJSIP/+4915112345678@callcontrol-pstn"
    # 600 minor units at 12 per minute pay for 50 minutes.
    assert pstn.max_talk_s == 50 * 60
    assert plan.caller_id == "+441234567"


def test_pstn_legs_are_skipped_without_positive_balance_but_sip_legs_stay() -> None:
    plan = decide(replace(ACTIVE, balance_minor=0))
    assert isinstance(plan, ForwardingPlan)
    assert [leg.skipped for leg in plan.legs] == [False, True]


def test_pstn_leg_without_a_rate_is_skipped() -> None:
    no_rate = replace(PSTN, rate=None)
    plan = decide(replace(ACTIVE, destinations=(no_rate,)))
    assert plan == Reject(19, "no_destination", **OWNED)


def test_no_destination_but_voicemail_still_takes_the_call() -> None:
    plan = decide(replace(ACTIVE, destinations=(), voicemail_enabled=True))
    assert isinstance(plan, ForwardingPlan)
    assert plan.voicemail is not None
    assert plan.voicemail.greeting_media == POLICY.default_voicemail_greeting


def test_endpoint_strings_for_each_destination_type() -> None:
    names = EndpointNames(external="ext", pstn="trunk")
    assert leg_endpoint(DestinationType.SIP_ACCOUNT, "alice", names) == "PJSIP/alice"
    assert leg_endpoint(DestinationType.IP, "100@192.0.2.7:5061", names) == (
        "PJSIP/ext/sip:100@192.0.2.7:5061"
    )
    assert leg_endpoint(DestinationType.SIP_URI, "bob@sip.example", names) == (
        "PJSIP/ext/sip:bob@sip.example"
    )
    assert leg_endpoint(DestinationType.PSTN, "+33123", names) == "PJSIP/+33123@trunk"


# ---- forwarding loops through the carrier (X-CallControl-Hops) -------------------


def test_a_call_forwarded_max_hops_times_already_is_a_loop_refused_with_a_final_603() -> None:
    limit = POLICY.max_hops
    decision = decide_inbound(ACTIVE, caller_id="+441234567", now=NOW, policy=POLICY, hops=limit)
    # Q.850 25 "exchange routing error": chan_pjsip sends 603, which a carrier
    # does not retry on another route (that would go round the loop again).
    assert decision == Reject(25, "forwarding_loop", **OWNED)
    more = decide_inbound(ACTIVE, caller_id=None, now=NOW, policy=POLICY, hops=limit + 5)
    assert more == Reject(25, "forwarding_loop", **OWNED)


def test_below_the_hop_limit_the_call_is_forwarded_and_remembers_its_hops() -> None:
    decision = decide_inbound(
        ACTIVE, caller_id="+441234567", now=NOW, policy=POLICY, hops=POLICY.max_hops - 1
    )
    assert isinstance(decision, ForwardingPlan)
    assert decision.hops == POLICY.max_hops - 1
    first = decide(ACTIVE)
    assert isinstance(first, ForwardingPlan) and first.hops == 0


def test_the_hop_limit_is_the_policys() -> None:
    strict = replace(POLICY, max_hops=1)
    assert decide_inbound(ACTIVE, caller_id=None, now=NOW, policy=strict, hops=1) == Reject(
        25, "forwarding_loop", **OWNED
    )
    assert isinstance(
        decide_inbound(ACTIVE, caller_id=None, now=NOW, policy=strict), ForwardingPlan
    )


def test_a_number_not_in_service_stays_unallocated_whatever_the_hops() -> None:
    unknown = decide_inbound(None, caller_id=None, now=NOW, policy=POLICY, hops=9)
    assert unknown == Reject(1, "unknown_number")
    retired = replace(ACTIVE, state=NumberState.DISCONNECTED)
    assert decide_inbound(retired, caller_id=None, now=NOW, policy=POLICY, hops=9) == Reject(
        1, "not_in_service"
    )
