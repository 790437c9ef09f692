"""Outbound calls from a customer's SIP account: who may call where, showing what.

``decide_outbound`` is pure: the SIP account's facts, the destination (already
normalised with ``callerid.normalise_dialled``) and its rate in, a plan of one
PSTN leg (or a rejection) out. Rules kept here:

- an unknown SIP account is refused (Q.850 21 -> 403);
- a number that cannot be parsed is refused as invalid (Q.850 28 -> 484);
- the account's balance must be positive and pay for at least the first
  billed second at the destination's rate (Q.850 21 -> 403, reason no_credit);
- a destination without a rate is refused (Q.850 21, reason no_rate);
- the rented number is shown (From / P-Asserted-Identity) only with the
  CallerID service and only to numbers of its own country; otherwise the
  call goes out anonymous with ``Privacy: id``;
- the call is capped at the seconds the balance pays for at that rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callcontrol.domain.callerid import (
    E164,
    Present,
    decide_outbound_callerid,
    normalise_dialled,
    parse_e164,
)
from callcontrol.domain.contract import CAUSE_INVALID_NUMBER_FORMAT as CAUSE_INVALID_NUMBER_FORMAT
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.rating import Rate, max_talk_seconds
from callcontrol.domain.routing import (
    CAUSE_CALL_REJECTED,
    EndpointNames,
    ForwardingPlan,
    PlannedLeg,
    Reject,
    leg_endpoint,
)
from callcontrol.domain.vocabulary import CallDirection, DestinationType, ForwardingMode


@dataclass(frozen=True, slots=True)
class SipAccountFacts:
    login: str
    account_id: int
    balance_minor: int
    currency: str
    presented_number: str | None  # the rented number this SIP account presents (E.164)
    presented_number_id: int | None
    callerid_service: bool


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    endpoints: EndpointNames = field(default_factory=EndpointNames)
    ring_timeout_s: int = 60


def home_region(facts: SipAccountFacts) -> str | None:
    """The country national-format numbers are dialled in: the rented number's."""
    if facts.presented_number is None:
        return None
    try:
        return parse_e164(facts.presented_number).region
    except InvalidInput:
        return None


def dialled_destination(dialled: str, facts: SipAccountFacts | None) -> E164 | None:
    """The E.164 number a SIP account dialled, or None when it cannot be one.

    National format is read in the country of the account's rented number; an
    account without one must dial internationally (``+`` or ``00``).
    """
    region = home_region(facts) if facts is not None else None
    try:
        if region is not None:
            return normalise_dialled(dialled, region)
        text = dialled.strip()
        if text.startswith("00"):
            text = "+" + text[2:]
        return parse_e164(text)
    except InvalidInput:
        return None


def decide_outbound(
    facts: SipAccountFacts | None,
    destination: E164 | None,
    rate: Rate | None,
    *,
    policy: OutboundPolicy,
) -> Reject | ForwardingPlan:
    if facts is None:
        return Reject(CAUSE_CALL_REJECTED, "unknown_sip_account")
    account_id = facts.account_id  # the CDR of a refused call is still the account's
    if destination is None:
        return Reject(CAUSE_INVALID_NUMBER_FORMAT, "invalid_number", account_id=account_id)
    if facts.balance_minor <= 0:
        return Reject(CAUSE_CALL_REJECTED, "no_credit", account_id=account_id)
    if rate is None:
        return Reject(CAUSE_CALL_REJECTED, "no_rate", account_id=account_id)
    cap_s = max_talk_seconds(facts.balance_minor, rate)
    if cap_s <= 0:  # the balance pays for not even the first second
        return Reject(CAUSE_CALL_REJECTED, "no_credit", account_id=account_id)
    presented = _presented(facts)
    callerid = decide_outbound_callerid(presented, facts.callerid_service, destination)
    shown = str(callerid.number) if isinstance(callerid, Present) else None
    target = str(destination)
    leg = PlannedLeg(
        position=1,
        type=DestinationType.PSTN,
        target=target,
        endpoint=leg_endpoint(DestinationType.PSTN, target, policy.endpoints),
        ring_timeout_s=policy.ring_timeout_s,
        max_talk_s=cap_s,
        rate=rate,
    )
    return ForwardingPlan(
        number_id=facts.presented_number_id,
        account_id=facts.account_id,
        did=target,
        mode=ForwardingMode.SEQUENTIAL,
        legs=(leg,),
        currency=facts.currency,
        balance_minor=facts.balance_minor,
        caller_id=shown,
        withhold_caller_id=shown is None,
        direction=CallDirection.OUTBOUND,
    )


def _presented(facts: SipAccountFacts) -> E164 | None:
    if facts.presented_number is None:
        return None
    try:
        return parse_e164(facts.presented_number)
    except InvalidInput:
        return None
