"""Which decision a new call gets: one router per direction.

The dialplan hands every call to Stasis with its direction as the first
argument (``inbound`` to one of our DIDs from the carrier, ``outbound`` from a
customer's SIP account, whose endpoint name is the third argument). A router
gathers the facts the pure core needs (one database round trip) and returns
the core's decision with what the CDR records as the call's number and caller.
A lookup that fails (database down) becomes a temporary-failure rejection:
the caller gets 503 and may retry, and the call still leaves a CDR.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

import structlog

from callcontrol.ari import events as ari
from callcontrol.domain.contract import (
    ARG_INBOUND,
    ARG_OUTBOUND,
    CALL_DIRECTIONS,
    CAUSE_RETRY_ELSEWHERE,
    CAUSE_UNALLOCATED,
    HOPS_ARG_INDEX,
    parse_hops,
)
from callcontrol.domain.outbound import OutboundPolicy, decide_outbound, dialled_destination
from callcontrol.domain.routing import (
    ForwardingPlan,
    Reject,
    RoutingPolicy,
    decide_inbound,
    standing_decision,
)
from callcontrol.domain.vocabulary import CallDirection
from callcontrol.engine.ports import LookupUnavailable, NumberDirectory, SipAccountDirectory

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RoutedCall:
    """A new call's decision and the identities its CDR keeps."""

    direction: CallDirection
    decision: ForwardingPlan | Reject
    number: str  # inbound: the DID (E.164 when it is one); outbound: the number dialled
    caller: str | None  # inbound: the caller's number; outbound: the SIP account's login


class CallRouter(Protocol):
    async def route(self, start: ari.StasisStart) -> RoutedCall: ...


class NumberRouter(CallRouter, Protocol):
    """A router of one direction, asked by either executor."""

    async def route_number(
        self, number: str, party: str | None, *, hops: int = 0
    ) -> RoutedCall: ...


def normalise_did(raw: str) -> str | None:
    """Asterisk's ${EXTEN} as E.164 with '+', or None when it cannot be one."""
    digits = raw[1:] if raw.startswith("+") else raw
    if not digits.isdigit() or not 2 <= len(digits) <= 15:
        return None
    return "+" + digits


def stasis_arg(start: ari.StasisStart, index: int) -> str | None:
    return start.args[index] if len(start.args) > index and start.args[index] else None


class InboundRouter:
    """A call from the carrier to one of our DIDs: the number's state decides."""

    def __init__(self, *, directory: NumberDirectory, policy: RoutingPolicy) -> None:
        self._directory = directory
        self._policy = policy

    async def route(self, start: ari.StasisStart) -> RoutedCall:
        channel = start.channel
        raw_did = stasis_arg(start, 1) or channel.dialplan.exten
        hops = parse_hops(stasis_arg(start, HOPS_ARG_INDEX))
        return await self.route_number(raw_did, channel.caller.number or None, hops=hops)

    async def route_number(self, raw_did: str, caller: str | None, *, hops: int = 0) -> RoutedCall:
        """The decision for a call to ``raw_did`` (Asterisk's ${EXTEN}), whatever
        executor asks (ARI's StasisStart, a FastAGI request)."""
        did = normalise_did(raw_did)
        routed = RoutedCall(
            CallDirection.INBOUND,
            Reject(CAUSE_UNALLOCATED, "malformed_did"),
            did or raw_did,
            caller,
        )
        if did is None:
            return routed
        try:
            snapshot = await self._directory.snapshot(did)
        except LookupUnavailable as exc:
            log.warning("number_lookup_failed", error=str(exc))
            return replace(routed, decision=Reject(CAUSE_RETRY_ELSEWHERE, "lookup_failed"))
        except Exception:
            log.exception("number_lookup_failed")
            return replace(routed, decision=Reject(CAUSE_RETRY_ELSEWHERE, "lookup_failed"))
        decision = decide_inbound(
            snapshot, caller_id=caller, now=datetime.now(UTC), policy=self._policy, hops=hops
        )
        if isinstance(decision, Reject) and decision.reason == "forwarding_loop":
            log.warning("forwarding_loop", did=did, caller=caller, hops=hops)
        return replace(routed, decision=decision)

    async def standing_plan(self, did: str) -> RoutedCall | None:
        """``standing_decision`` for ``did`` (E.164) as a routed call; a failed
        lookup raises (``LookupUnavailable`` or the database's error)."""
        snapshot = await self._directory.snapshot(did)
        decision = standing_decision(snapshot, now=datetime.now(UTC), policy=self._policy)
        return None if decision is None else RoutedCall(CallDirection.INBOUND, decision, did, None)


class OutboundRouter:
    """A call from a customer's SIP account: credit, rate and CallerID decide."""

    def __init__(self, *, accounts: SipAccountDirectory, policy: OutboundPolicy) -> None:
        self._accounts = accounts
        self._policy = policy

    async def route(self, start: ari.StasisStart) -> RoutedCall:
        dialled = stasis_arg(start, 1) or start.channel.dialplan.exten
        return await self.route_number(dialled, stasis_arg(start, 2))

    async def route_number(self, dialled: str, login: str | None, *, hops: int = 0) -> RoutedCall:
        """The decision for ``login``'s call to ``dialled``, whatever executor asks."""
        routed = RoutedCall(
            CallDirection.OUTBOUND, Reject(CAUSE_RETRY_ELSEWHERE, "lookup_failed"), dialled, login
        )
        try:
            facts = await self._accounts.facts(login) if login else None
            destination = dialled_destination(dialled, facts)
            rate = None
            if facts is not None and destination is not None:
                rate = await self._accounts.rate_for(str(destination).lstrip("+"))
        except LookupUnavailable as exc:
            log.warning("sip_account_lookup_failed", login=login, error=str(exc))
            return routed
        except Exception:
            log.exception("sip_account_lookup_failed", login=login)
            return routed
        decision = decide_outbound(facts, destination, rate, policy=self._policy)
        number = str(destination) if destination is not None else dialled
        return RoutedCall(CallDirection.OUTBOUND, decision, number, login)


class DirectionRouter:
    """Picks the router by the dialplan's first Stasis argument."""

    def __init__(self, *, inbound: NumberRouter, outbound: NumberRouter) -> None:
        self._routers = {ARG_INBOUND: inbound, ARG_OUTBOUND: outbound}
        self._inbound, self._outbound = inbound, outbound

    @staticmethod
    def handles(start: ari.StasisStart) -> bool:
        return bool(start.args) and start.args[0] in CALL_DIRECTIONS

    def refuse(self, start: ari.StasisStart, reason: str) -> RoutedCall:
        """A call turned away unlooked-up (the engine is saturated): 503, so the
        carrier retries elsewhere; the CDR names what the dialplan said."""
        direction = CallDirection(start.args[0])
        number = stasis_arg(start, 1) or start.channel.dialplan.exten
        if direction is CallDirection.INBOUND:
            caller = start.channel.caller.number or None
            number = normalise_did(number) or number
        else:
            caller = stasis_arg(start, 2)
        return RoutedCall(direction, Reject(CAUSE_RETRY_ELSEWHERE, reason), number, caller)

    async def route(self, start: ari.StasisStart) -> RoutedCall:
        routed = await self._routers[start.args[0]].route(start)
        return self._decided(routed)

    async def route_number(
        self, direction: CallDirection, number: str, party: str | None, *, hops: int = 0
    ) -> RoutedCall:
        """The direction-neutral entry (the FastAGI executor's): ``party`` is the
        caller's number (inbound) or the calling SIP account's login (outbound);
        ``hops`` the inbound INVITE's X-CallControl-Hops."""
        router = self._inbound if direction is CallDirection.INBOUND else self._outbound
        return self._decided(await router.route_number(number, party, hops=hops))

    @staticmethod
    def _decided(routed: RoutedCall) -> RoutedCall:
        log.info(
            "call_decided",
            direction=routed.direction.value,
            decision=type(routed.decision).__name__,
            # (isinstance, not getattr with a default: that raised and caught an
            # AttributeError for every forwarded call)
            reason=routed.decision.reason if isinstance(routed.decision, Reject) else None,
        )
        return routed
