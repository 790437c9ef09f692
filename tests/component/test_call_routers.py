"""The routers gather facts for the pure core and keep what the CDR records.

Fake directories stand in for the database; the StasisStart events are the
recorded ones from Asterisk with the dialplan's arguments changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs
from support.fake_ari import sample_event

from callcontrol.ari.events import StasisStart, parse_event
from callcontrol.domain.outbound import OutboundPolicy, SipAccountFacts
from callcontrol.domain.rating import Rate
from callcontrol.domain.routing import (
    DestinationFacts,
    ForwardingPlan,
    NumberSnapshot,
    Reject,
    RoutingPolicy,
)
from callcontrol.domain.vocabulary import CallDirection, DestinationType, NumberKind, NumberState
from callcontrol.engine.routers import DirectionRouter, InboundRouter, OutboundRouter


def stasis_start(*args: str, caller: str = "4915112345678") -> StasisStart:
    data: dict[str, Any] = sample_event("StasisStart")
    data["args"] = list(args)
    data["channel"]["caller"]["number"] = caller
    event = parse_event(json.dumps(data))
    assert isinstance(event, StasisStart)
    return event


class NoNumbers:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.asked: list[str] = []

    async def snapshot(self, did: str) -> NumberSnapshot | None:
        self.asked.append(did)
        if self.fail:
            raise ConnectionError("database down")
        return None


@dataclass
class Accounts:
    facts_by_login: dict[str, SipAccountFacts] = field(default_factory=dict)
    rates: dict[str, Rate] = field(default_factory=dict)
    fail: bool = False
    rated: list[str] = field(default_factory=list)

    async def facts(self, login: str) -> SipAccountFacts | None:
        if self.fail:
            raise ConnectionError("database down")
        return self.facts_by_login.get(login)

    async def rate_for(self, digits: str) -> Rate | None:
        self.rated.append(digits)
        return next((r for p, r in self.rates.items() if digits.startswith(p)), None)


ALICE = SipAccountFacts(
    login="alice",
    account_id=7,
    balance_minor=500,
    currency="EUR",
    presented_number="+4930123456",
    presented_number_id=3,
    callerid_service=True,
)


def outbound(accounts: Accounts) -> OutboundRouter:
    return OutboundRouter(accounts=accounts, policy=OutboundPolicy())


async def test_an_inbound_call_to_a_malformed_did_is_rejected_without_a_lookup() -> None:
    directory = NoNumbers()
    router = InboundRouter(directory=directory, policy=RoutingPolicy())
    routed = await router.route(stasis_start("inbound", "49abc"))
    assert routed.decision == Reject(1, "malformed_did")
    assert routed.number == "49abc" and directory.asked == []


async def test_an_inbound_lookup_that_fails_becomes_a_503_rejection() -> None:
    router = InboundRouter(directory=NoNumbers(fail=True), policy=RoutingPolicy())
    routed = await router.route(stasis_start("inbound", "4930123456"))
    assert routed.decision == Reject(34, "lookup_failed")
    assert routed.number == "+4930123456" and routed.caller == "4915112345678"


class OneNumber:
    def __init__(self, snapshot: NumberSnapshot) -> None:
        self._snapshot = snapshot

    async def snapshot(self, did: str) -> NumberSnapshot | None:
        return self._snapshot if did == self._snapshot.e164 else None


ACTIVE_DID = NumberSnapshot(
    number_id=5,
    account_id=9,
    e164="+4930123456",
    kind=NumberKind.VOICE,
    state=NumberState.ACTIVE,
    balance_minor=100,
    currency="EUR",
    destinations=(DestinationFacts(1, DestinationType.SIP_URI, "sip:a@192.0.2.1", 20),),
)


@pytest.mark.parametrize(("header", "hops"), [("", 0), ("2", 2), ("x", 0)])
async def test_the_third_inbound_argument_is_the_calls_hop_count(header: str, hops: int) -> None:
    router = InboundRouter(directory=OneNumber(ACTIVE_DID), policy=RoutingPolicy(max_hops=3))
    routed = await router.route(stasis_start("inbound", "4930123456", header))
    assert isinstance(routed.decision, ForwardingPlan) and routed.decision.hops == hops


async def test_an_inbound_call_at_the_hop_limit_is_refused_as_a_forwarding_loop() -> None:
    router = InboundRouter(directory=OneNumber(ACTIVE_DID), policy=RoutingPolicy(max_hops=3))
    with capture_logs() as logs:
        routed = await router.route(stasis_start("inbound", "4930123456", "3"))
    assert routed.decision == Reject(25, "forwarding_loop", number_id=5, account_id=9)
    assert [entry["event"] for entry in logs] == ["forwarding_loop"]
    assert logs[0]["hops"] == 3 and logs[0]["did"] == "+4930123456"


async def test_a_standing_plan_is_the_decision_for_a_call_with_no_caller_and_no_hops() -> None:
    router = InboundRouter(directory=OneNumber(ACTIVE_DID), policy=RoutingPolicy())
    standing = await router.standing_plan("+4930123456")
    assert standing is not None and standing.caller is None
    assert isinstance(standing.decision, ForwardingPlan) and standing.decision.hops == 0
    suspended = replace(ACTIVE_DID, balance_minor=-1)
    routed = await InboundRouter(
        directory=OneNumber(suspended), policy=RoutingPolicy()
    ).standing_plan("+4930123456")
    assert routed is not None and routed.decision == Reject(
        21, "suspended", number_id=5, account_id=9
    )


@pytest.mark.parametrize(
    "snapshot",
    [
        replace(ACTIVE_DID, test_expires_at=datetime(2099, 1, 1, tzinfo=UTC)),
        replace(
            ACTIVE_DID,
            destinations=(
                DestinationFacts(
                    1, DestinationType.PSTN, "+4915112345678", 20, Rate("49", 5, "EUR")
                ),
            ),
        ),
        replace(ACTIVE_DID, state=NumberState.AVAILABLE, account_id=None),
    ],
    ids=["test-number", "pstn-leg", "nobodys-number"],
)
async def test_no_standing_plan_where_each_call_must_be_asked_about(
    snapshot: NumberSnapshot,
) -> None:
    router = InboundRouter(directory=OneNumber(snapshot), policy=RoutingPolicy())
    assert await router.standing_plan("+4930123456") is None
    assert await router.standing_plan("+4930999999") is None, "unknown"


async def test_a_standing_plan_lookup_that_fails_raises() -> None:
    router = InboundRouter(directory=NoNumbers(fail=True), policy=RoutingPolicy())
    with pytest.raises(ConnectionError):
        await router.standing_plan("+4930123456")


async def test_an_outbound_call_dialled_nationally_is_read_in_the_rented_numbers_country() -> None:
    accounts = Accounts({"alice": ALICE}, {"49": Rate("49", 6, "EUR")})
    routed = await outbound(accounts).route(stasis_start("outbound", "0305550123", "alice"))
    assert routed.direction is CallDirection.OUTBOUND
    assert routed.number == "+49305550123" and routed.caller == "alice"
    assert accounts.rated == ["49305550123"]
    plan = routed.decision
    assert isinstance(plan, ForwardingPlan)
    assert plan.caller_id == "+4930123456" and not plan.withhold_caller_id
    assert plan.legs[0].endpoint.startswith("PJSIP/+49305550123@")


async def test_an_outbound_call_abroad_is_withheld() -> None:
    accounts = Accounts({"alice": ALICE}, {"43": Rate("43", 9, "EUR")})
    routed = await outbound(accounts).route(stasis_start("outbound", "0043159900", "alice"))
    plan = routed.decision
    assert isinstance(plan, ForwardingPlan)
    assert plan.caller_id is None and plan.withhold_caller_id


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("outbound", "+49305550123", "mallory"), "unknown_sip_account"),
        (("outbound", "+49305550123"), "unknown_sip_account"),  # no endpoint argument
        (("outbound", "12", "alice"), "invalid_number"),
        (("outbound", "+88235550123", "alice"), "no_rate"),
    ],
)
async def test_an_outbound_call_that_may_not_go_out_is_rejected(
    args: tuple[str, ...], reason: str
) -> None:
    accounts = Accounts({"alice": ALICE}, {"49": Rate("49", 6, "EUR")})
    routed = await outbound(accounts).route(stasis_start(*args))
    assert isinstance(routed.decision, Reject) and routed.decision.reason == reason


async def test_an_outbound_lookup_that_fails_becomes_a_503_rejection() -> None:
    routed = await outbound(Accounts(fail=True)).route(
        stasis_start("outbound", "+49305550123", "alice")
    )
    assert routed.decision == Reject(34, "lookup_failed")
    assert routed.caller == "alice"


async def test_the_direction_router_takes_only_the_dialplans_two_directions() -> None:
    accounts = Accounts({"alice": ALICE}, {"49": Rate("49", 6, "EUR")})
    router = DirectionRouter(
        inbound=InboundRouter(directory=NoNumbers(), policy=RoutingPolicy()),
        outbound=outbound(accounts),
    )
    assert DirectionRouter.handles(stasis_start("inbound", "4930123456"))
    assert DirectionRouter.handles(stasis_start("outbound", "0305550123", "alice"))
    assert not DirectionRouter.handles(stasis_start("leg"))
    assert not DirectionRouter.handles(stasis_start())
    routed = await router.route(stasis_start("outbound", "0305550123", "alice"))
    assert routed.direction is CallDirection.OUTBOUND
    routed = await router.route(stasis_start("inbound", "4930123456"))
    assert routed.direction is CallDirection.INBOUND
    assert routed.decision == Reject(1, "unknown_number")
