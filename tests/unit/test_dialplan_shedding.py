"""Shedding before Stasis: the share of new calls the dialplan turns away."""

from __future__ import annotations

import asyncio

import pytest

from callcontrol.ari.errors import AriError
from callcontrol.engine.admission import (
    HOLD_S,
    MAX_PERMILLE,
    DialplanShedding,
    ShedController,
    ShedPolicy,
)


def feed(
    controller: ShedController,
    rate: float,
    ticks: int,
    *,
    start: tuple[int, float] = (0, 0.0),
    congested: bool = False,
) -> tuple[int, float]:
    total, now = start
    for _ in range(ticks):
        total += round(rate * 0.5)
        now += 0.5
        controller.update(total, now, congested=congested)
    return total, now


def test_below_the_ceiling_nothing_is_shed() -> None:
    controller = ShedController(ShedPolicy(max_call_rate=100))
    feed(controller, 80, 10)
    assert controller.permille == 0


def test_above_the_ceiling_the_excess_share_is_shed() -> None:
    controller = ShedController(ShedPolicy(max_call_rate=100))
    feed(controller, 400, 10)
    assert controller.permille == 750  # 1 - 100/400


def test_the_share_never_reaches_every_call() -> None:
    controller = ShedController(ShedPolicy(max_call_rate=1))
    feed(controller, 10_000, 10)
    assert controller.permille == MAX_PERMILLE


def test_no_ceiling_and_no_congestion_sheds_nothing() -> None:
    controller = ShedController(ShedPolicy())
    feed(controller, 5000, 10)
    assert controller.permille == 0


def test_congestion_lowers_the_ceiling_below_what_was_admitted_then_it_recovers() -> None:
    controller = ShedController(ShedPolicy())
    point = feed(controller, 300, 4)
    point = feed(controller, 300, 1, start=point, congested=True)
    assert controller.ceiling == pytest.approx(300 * 0.7)
    assert controller.permille == 300  # 1 - 210/300
    point = feed(controller, 300, 3, start=point, congested=True)
    assert controller.ceiling < 300 * 0.7 * 0.7
    assert controller.permille > 500
    feed(controller, 300, 40, start=point)
    assert controller.permille == 0
    assert controller.ceiling == float("inf")


def test_a_counter_that_went_back_measures_nothing() -> None:
    controller = ShedController(ShedPolicy(max_call_rate=100))
    point = feed(controller, 400, 4)
    before = controller.permille
    controller.update(3, point[1] + 0.5, congested=False)  # Asterisk restarted: counter from 0
    assert controller.offered_rate < 400
    assert controller.permille < before


class FakeAsterisk:
    def __init__(self) -> None:
        self.variables: dict[str, str] = {}
        self.writes: list[tuple[str, str]] = []
        self.fail = False

    async def get_global_variable(self, name: str) -> str:
        if self.fail:
            raise AriError("no answer within 5.0 s")
        return self.variables.get(name, "")

    async def set_global_variable(self, name: str, value: str) -> None:
        self.writes.append((name, value))
        self.variables[name] = value


def test_the_share_is_published_with_its_expiry_and_withdrawn_once_the_load_drops() -> None:
    asterisk = FakeAsterisk()
    clock = [1_000.0]
    shedding = DialplanShedding(
        asterisk,
        "cc-test.1",
        controller=ShedController(ShedPolicy(max_call_rate=100)),
        congested=lambda: False,
        clock=lambda: clock[0],
    )
    offered = "CALLCONTROL_OFFERED_cc_test_1"
    shed = "CALLCONTROL_SHED_cc_test_1"

    async def run(rate: int, ticks: int) -> None:
        for _ in range(ticks):
            count = int(asterisk.variables.get(offered, "0") or 0)
            asterisk.variables[offered] = str(count + rate // 2)
            clock[0] += 0.5
            await shedding.tick()

    async def scenario() -> None:
        asterisk.variables["CALLCONTROL_SHEDDED_cc_test_1"] = "7"  # before this engine
        await run(50, 4)
        assert shed not in asterisk.variables  # nothing written while nothing is shed
        asterisk.variables["CALLCONTROL_SHEDDED_cc_test_1"] = "49"
        await run(400, 6)
        until, permille = asterisk.variables[shed].split(",")
        assert int(until) == int(clock[0]) + HOLD_S
        assert 600 <= int(permille) <= 750
        assert shedding.shed_total == 42
        await run(20, 6)
        assert asterisk.variables[shed] == ""
        writes = len(asterisk.writes)
        await run(20, 4)
        assert len(asterisk.writes) == writes  # withdrawn once, then quiet
        asterisk.variables["CALLCONTROL_SHEDDED_cc_test_1"] = "3"  # Asterisk restarted
        await run(20, 1)
        asterisk.variables["CALLCONTROL_SHEDDED_cc_test_1"] = "5"
        await run(20, 1)
        assert shedding.shed_total == 44

    asyncio.run(scenario())


def test_a_failed_tick_is_logged_and_the_loop_goes_on() -> None:
    asterisk = FakeAsterisk()
    asterisk.fail = True
    shedding = DialplanShedding(
        asterisk, "app", controller=ShedController(ShedPolicy()), congested=lambda: False
    )
    ticks = {"n": 0}

    def serving() -> bool:
        ticks["n"] += 1
        return True

    async def scenario() -> None:
        task = asyncio.create_task(shedding.run(serving))
        await asyncio.sleep(1.2)
        assert not task.done()  # the AriError did not end the loop
        task.cancel()

    asyncio.run(scenario())
    assert ticks["n"] >= 2
