"""Outbound calls from SIP accounts: refusals, the country-scoped CallerID, the cap."""

from __future__ import annotations

from dataclasses import replace

from callcontrol.domain.callerid import parse_e164
from callcontrol.domain.outbound import (
    OutboundPolicy,
    SipAccountFacts,
    decide_outbound,
    home_region,
)
from callcontrol.domain.rating import Rate
from callcontrol.domain.routing import ForwardingPlan, Reject
from callcontrol.domain.vocabulary import CallDirection

POLICY = OutboundPolicy()
GERMAN = SipAccountFacts(
    login="alice",
    account_id=4,
    balance_minor=120,
    currency="EUR",
    presented_number="+4930123456",
    presented_number_id=9,
    callerid_service=True,
)
DE_MOBILE = parse_e164("+4915112345678")
AT_MOBILE = parse_e164("+436641234567")
RATE = Rate("49", 60, "EUR")


def plan(facts: SipAccountFacts = GERMAN, dest=DE_MOBILE, rate: Rate | None = RATE) -> object:
    return decide_outbound(facts, dest, rate, policy=POLICY)


def test_same_country_call_with_the_service_presents_the_rented_number() -> None:
    decision = plan()
    assert isinstance(decision, ForwardingPlan)
    assert decision.caller_id == "+4930123456" and not decision.withhold_caller_id
    assert decision.direction is CallDirection.OUTBOUND
    (leg,) = decision.legs
    assert leg.endpoint == "PJSIP/+4915112345678@callcontrol-pstn"
    assert leg.max_talk_s == 120  # 120 cents at 60 per minute


def test_a_call_to_another_country_withholds_the_caller_id() -> None:
    decision = plan(dest=AT_MOBILE)
    assert isinstance(decision, ForwardingPlan)
    assert decision.caller_id is None and decision.withhold_caller_id


def test_without_the_callerid_service_the_call_is_anonymous() -> None:
    decision = plan(replace(GERMAN, callerid_service=False))
    assert isinstance(decision, ForwardingPlan) and decision.withhold_caller_id


def test_refusals_have_distinct_reasons_and_causes() -> None:
    assert plan(None) == Reject(21, "unknown_sip_account")  # type: ignore[arg-type]
    # A known account's refused call is still its call (its CDR names the account).
    assert plan(dest=None) == Reject(28, "invalid_number", account_id=4)
    assert plan(replace(GERMAN, balance_minor=0)) == Reject(21, "no_credit", account_id=4)
    assert plan(rate=None) == Reject(21, "no_rate", account_id=4)


def test_national_numbers_are_dialled_in_the_rented_numbers_country() -> None:
    assert home_region(GERMAN) == "DE"
    assert home_region(replace(GERMAN, presented_number=None)) is None


def test_a_balance_that_pays_not_one_second_is_no_credit() -> None:
    """1 unit at 120/min buys half a second: the call is refused, not given a free second."""
    tiny = replace(GERMAN, balance_minor=1)
    assert plan(tiny, rate=Rate("49", 120, "EUR")) == Reject(21, "no_credit", account_id=4)
    capped = plan(tiny, rate=Rate("49", 60, "EUR"))
    assert isinstance(capped, ForwardingPlan) and capped.legs[0].max_talk_s == 1
