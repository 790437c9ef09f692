"""Admission control: new calls refused with 503 (cause 34), unlooked-up, while saturated."""

from __future__ import annotations

from dataclasses import dataclass

from support.fake_ari import sample_event

from callcontrol.ari.events import StasisStart
from callcontrol.domain.routing import Reject
from callcontrol.domain.vocabulary import CallDirection
from callcontrol.engine.admission import Admission, AdmissionLimits, SheddingRouter
from callcontrol.engine.routers import DirectionRouter, RoutedCall


@dataclass
class Load:
    in_flight: int = 0
    latency_s: float = 0.0


class Looked:
    def __init__(self) -> None:
        self.lookups = 0

    async def route(self, start: StasisStart) -> RoutedCall:
        self.lookups += 1
        return RoutedCall(CallDirection.INBOUND, Reject(1, "looked_up"), "+4930123456", None)


def start(*args: str) -> StasisStart:
    data = sample_event("StasisStart")
    data["args"] = list(args)
    return StasisStart.model_validate(data)


LIMITS = AdmissionLimits(max_calls=10, max_ari_in_flight=5, max_ari_latency_s=0.2)


def test_each_limit_refuses_for_its_own_reason_and_nothing_is_remembered() -> None:
    load, active = Load(), [0]
    admission = Admission(LIMITS, active_calls=lambda: active[0], ari=load)
    assert admission.refusal() is None
    active[0] = 11
    assert admission.refusal() == "overload_calls"
    active[0], load.in_flight = 3, 6
    assert admission.refusal() == "overload_ari_backlog"
    load.in_flight, load.latency_s = 0, 0.3
    assert admission.refusal() == "overload_ari_slow"
    load.latency_s = 0.05
    assert admission.refusal() is None


async def test_a_shed_call_gets_503_without_a_lookup_and_is_counted() -> None:
    inbound, outbound = Looked(), Looked()
    load = Load(latency_s=1.0)
    router = SheddingRouter(
        inner=DirectionRouter(inbound=inbound, outbound=outbound),
        admission=Admission(LIMITS, active_calls=lambda: 0, ari=load),
    )
    routed = await router.route(start("inbound", "4930123456"))
    assert routed.decision == Reject(34, "overload_ari_slow")
    assert routed.number == "+4930123456" and routed.direction is CallDirection.INBOUND
    out = await router.route(start("outbound", "004930555", "alice"))
    assert out.caller == "alice" and out.direction is CallDirection.OUTBOUND
    assert inbound.lookups == outbound.lookups == 0 and router.shed["overload_ari_slow"] == 2
    load.latency_s = 0.0
    await router.route(start("inbound", "4930123456"))
    assert inbound.lookups == 1
