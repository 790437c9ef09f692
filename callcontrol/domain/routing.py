"""Routing an inbound call: DID facts in, a plan out.

``decide_inbound`` is a pure function: given what the database knows about the
dialled number (a ``NumberSnapshot``, or ``None`` when the DID is unknown) and
the time, it returns either a ``Reject`` (with the Q.850 cause the caller will
hear as a SIP code) or a ``ForwardingPlan``. Rules kept here:

- unknown DIDs and numbers not in service (available, reserved, pending,
  disconnected, a test number whose hour is over) are rejected as unallocated
  (Q.850 1 -> SIP 404);
- ``sms-once`` numbers take no calls (also Q.850 1: it is not a voice number);
- a suspended number, or an owner whose balance is below zero, is rejected
  distinctly: Q.850 21 "call rejected" -> SIP 403, so a caller (or a carrier's
  monitoring) can tell "not paid" from "no such number";
- PSTN destinations need a positive balance; with a balance <= 0 they are
  skipped (SIP destinations stay free); a dialled PSTN leg carries the number
  of seconds the balance pays for, so the bridge can be capped;
- no destination and no voicemail -> Q.850 19 (no answer -> SIP 480);
- a call that callcontrol engines have already forwarded ``max_hops`` times
  (the ``X-CallControl-Hops`` header it arrived with, see ``contract.HOPS_HEADER``)
  is a forwarding loop through the carrier: Q.850 25 "exchange routing error",
  which chan_pjsip sends as 603 Decline - final, so the carrier does not try
  another route (that would go round the loop again). Its legs carry hops + 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from callcontrol.domain.contract import (  # re-exported: the core's modules import them here
    CAUSE_ANSWERED_ELSEWHERE as CAUSE_ANSWERED_ELSEWHERE,
)
from callcontrol.domain.contract import CAUSE_CALL_REJECTED as CAUSE_CALL_REJECTED
from callcontrol.domain.contract import CAUSE_CONGESTION as CAUSE_CONGESTION
from callcontrol.domain.contract import (
    CAUSE_EXCHANGE_ROUTING_ERROR as CAUSE_EXCHANGE_ROUTING_ERROR,
)
from callcontrol.domain.contract import CAUSE_NO_ANSWER as CAUSE_NO_ANSWER
from callcontrol.domain.contract import CAUSE_NO_USER_RESPONSE as CAUSE_NO_USER_RESPONSE
from callcontrol.domain.contract import CAUSE_NORMAL_CLEARING as CAUSE_NORMAL_CLEARING
from callcontrol.domain.contract import CAUSE_UNALLOCATED as CAUSE_UNALLOCATED
from callcontrol.domain.contract import CAUSE_USER_BUSY as CAUSE_USER_BUSY
from callcontrol.domain.lifecycle import CallAdmission, can_take_calls
from callcontrol.domain.rating import Rate, max_talk_seconds
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    ForwardingMode,
    NumberKind,
    NumberState,
)


@dataclass(frozen=True, slots=True)
class DestinationFacts:
    position: int
    type: DestinationType
    target: str
    ring_timeout_s: int
    # Only for PSTN: the rate for this target, None when no rate matches.
    rate: Rate | None = None


@dataclass(frozen=True, slots=True)
class NumberSnapshot:
    """What the call path needs to know about a DID, read in one query."""

    number_id: int
    account_id: int | None
    e164: str
    kind: NumberKind
    state: NumberState
    balance_minor: int
    currency: str
    test_expires_at: datetime | None = None
    greeting_media: str | None = None  # Asterisk media URI, e.g. sound:/srv/.../greeting
    voicemail_enabled: bool = False
    voicemail_greeting_media: str | None = None
    mode: ForwardingMode = ForwardingMode.SEQUENTIAL
    destinations: tuple[DestinationFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointNames:
    """The pjsip endpoints legs go through (from settings)."""

    external: str = "callcontrol-external"
    pstn: str = "callcontrol-pstn"


@dataclass(frozen=True, slots=True)
class Reject:
    cause: int
    reason: str  # machine-readable: unknown_number, suspended, not_voice, no_destination
    announcement: str | None = None
    number_id: int | None = None
    """The number the CDR counts the call for: set only while the account still holds it."""
    account_id: int | None = None


@dataclass(frozen=True, slots=True)
class PlannedLeg:
    position: int
    type: DestinationType
    target: str
    endpoint: str  # the ARI endpoint string the leg is originated to (POST /channels)
    ring_timeout_s: int
    skipped: bool = False  # PSTN without credit or without a rate
    max_talk_s: int | None = None  # PSTN: seconds the balance pays for
    rate: Rate | None = None


@dataclass(frozen=True, slots=True)
class VoicemailPlan:
    greeting_media: str
    max_seconds: int
    max_silence_seconds: int


@dataclass(frozen=True, slots=True)
class ForwardingPlan:
    number_id: int | None  # None: an outbound call from an account without a number
    account_id: int | None
    did: str
    mode: ForwardingMode
    legs: tuple[PlannedLeg, ...]
    greeting_media: str | None = None
    voicemail: VoicemailPlan | None = None
    currency: str = "EUR"
    balance_minor: int = 0
    caller_id: str | None = None
    # Outbound calls may withhold the caller id (anonymous From, Privacy: id).
    withhold_caller_id: bool = False
    direction: CallDirection = CallDirection.INBOUND
    hops: int = 0
    """How many times engines had forwarded the call when it reached us; its
    legs carry ``hops + 1`` in ``X-CallControl-Hops``."""

    @property
    def dialable_legs(self) -> tuple[PlannedLeg, ...]:
        return tuple(leg for leg in self.legs if not leg.skipped)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    endpoints: EndpointNames = field(default_factory=EndpointNames)
    default_voicemail_greeting: str = "sound:vm-intro"
    voicemail_max_seconds: int = 120
    voicemail_max_silence_seconds: int = 5
    suspended_announcement: str | None = None
    max_hops: int = 3


Decision = Reject | ForwardingPlan


def decide_inbound(
    snapshot: NumberSnapshot | None,
    *,
    caller_id: str | None,
    now: datetime,
    policy: RoutingPolicy,
    hops: int = 0,
) -> Decision:
    if snapshot is None:
        return Reject(CAUSE_UNALLOCATED, "unknown_number")
    admission = _admission(snapshot, now)
    if admission is not None:
        return admission
    if hops >= policy.max_hops:
        return _owners_reject(snapshot, CAUSE_EXCHANGE_ROUTING_ERROR, "forwarding_loop")
    legs = tuple(
        _plan_leg(d, snapshot.balance_minor, policy.endpoints) for d in snapshot.destinations
    )
    voicemail = None
    if snapshot.voicemail_enabled:
        voicemail = VoicemailPlan(
            greeting_media=snapshot.voicemail_greeting_media or policy.default_voicemail_greeting,
            max_seconds=policy.voicemail_max_seconds,
            max_silence_seconds=policy.voicemail_max_silence_seconds,
        )
    if voicemail is None and not any(not leg.skipped for leg in legs):
        return _owners_reject(snapshot, CAUSE_NO_ANSWER, "no_destination")
    return ForwardingPlan(
        number_id=snapshot.number_id,
        account_id=snapshot.account_id,
        did=snapshot.e164,
        mode=snapshot.mode,
        legs=legs,
        greeting_media=snapshot.greeting_media,
        voicemail=voicemail,
        currency=snapshot.currency,
        balance_minor=snapshot.balance_minor,
        caller_id=caller_id,
        hops=hops,
    )


def standing_decision(
    snapshot: NumberSnapshot | None, *, now: datetime, policy: RoutingPolicy
) -> Decision | None:
    """The decision every call to the number gets while its snapshot stays the
    same (a call with no hops yet and no caller), or None when it would depend
    on the call or the clock, so each call must be decided on its own: a PSTN
    destination (its cap is the balance at call time), a test number (its hour
    runs out), an unknown number or one no customer holds (nothing worth
    keeping: such calls are rare)."""
    if snapshot is None or snapshot.test_expires_at is not None:
        return None
    if any(d.type is DestinationType.PSTN for d in snapshot.destinations):
        return None
    decision = decide_inbound(snapshot, caller_id=None, now=now, policy=policy)
    if isinstance(decision, Reject) and decision.number_id is None:
        return None
    return decision


def _owners_reject(snapshot: NumberSnapshot, cause: int, reason: str) -> Reject:
    """A refusal of a number its account still holds: its statistics show the call."""
    return Reject(cause, reason, number_id=snapshot.number_id, account_id=snapshot.account_id)


def _admission(snapshot: NumberSnapshot, now: datetime) -> Reject | None:
    admission = can_take_calls(snapshot.state, snapshot.kind, snapshot.test_expires_at, now)
    if admission is CallAdmission.SMS_ONLY:
        return _owners_reject(snapshot, CAUSE_UNALLOCATED, "not_voice")
    if admission is CallAdmission.UNKNOWN:
        # Not (or no longer) the customer's number: the call is nobody's.
        expired = snapshot.state is NumberState.TESTING
        return Reject(CAUSE_UNALLOCATED, "test_expired" if expired else "not_in_service")
    if admission is CallAdmission.SUSPENDED or snapshot.balance_minor < 0:
        return _owners_reject(snapshot, CAUSE_CALL_REJECTED, "suspended")
    return None


def _plan_leg(dest: DestinationFacts, balance_minor: int, endpoints: EndpointNames) -> PlannedLeg:
    endpoint = leg_endpoint(dest.type, dest.target, endpoints)
    if dest.type is not DestinationType.PSTN:
        return PlannedLeg(dest.position, dest.type, dest.target, endpoint, dest.ring_timeout_s)
    rate = dest.rate
    cap_s = max_talk_seconds(balance_minor, rate) if rate is not None else 0
    if cap_s <= 0 or rate is None:  # the balance pays for not even the first second
        return PlannedLeg(
            dest.position, dest.type, dest.target, endpoint, dest.ring_timeout_s, skipped=True
        )
    return PlannedLeg(
        dest.position,
        dest.type,
        dest.target,
        endpoint,
        dest.ring_timeout_s,
        max_talk_s=cap_s,
        rate=rate,
    )


def leg_endpoint(kind: DestinationType, target: str, endpoints: EndpointNames) -> str:
    """The ARI endpoint for a destination (targets are validated when stored)."""
    if kind is DestinationType.SIP_ACCOUNT:
        return f"PJSIP/{target}"
    if kind is DestinationType.PSTN:
        return f"PJSIP/{target}@{endpoints.pstn}"
    if kind is DestinationType.SIP_URI:
        uri = target if target.startswith(("sip:", "sips:")) else f"sip:{target}"
        return f"PJSIP/{endpoints.external}/{uri}"
    # IP: the customer's own server; the target is sip:number@ip[:port] or ip[:port].
    uri = target if target.startswith("sip:") else f"sip:{target}"
    return f"PJSIP/{endpoints.external}/{uri}"
