"""Shedding before Stasis: the ceiling on new calls the dialplan enforces."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from callcontrol.ari.errors import AriError
from callcontrol.domain.shedding import IntakeLag, ShedController, ShedPolicy, per_window
from callcontrol.engine.admission import HOLD_S, DialplanShedding


class Load:
    """The dialplan's two counters as a load of ``offered`` calls/s meets a ceiling."""

    def __init__(self, controller: ShedController) -> None:
        self.controller = controller
        self.offered = 0
        self.shed = 0
        self.now = 0.0

    def run(self, rate: float, ticks: int, *, congested: bool = False) -> float:
        for _ in range(ticks):
            calls = round(rate * 0.5)
            ceiling = self.controller.ceiling
            admitted = calls if ceiling == math.inf else min(calls, round(ceiling * 0.5))
            self.offered += calls
            self.shed += calls - admitted
            self.now += 0.5
            self.controller.update(self.offered, self.shed, self.now, congested=congested)
        return self.controller.ceiling


def test_a_fixed_ceiling_holds_whatever_the_load() -> None:
    load = Load(ShedController(ShedPolicy(max_call_rate=100)))
    assert load.run(50, 4) == 100
    assert load.run(1000, 4) == 100


def test_no_ceiling_and_no_congestion_means_no_limit() -> None:
    load = Load(ShedController(ShedPolicy()))
    assert load.run(5000, 10) == math.inf


def test_congestion_lowers_the_ceiling_below_what_was_admitted_then_it_recovers() -> None:
    load = Load(ShedController(ShedPolicy()))
    load.run(300, 4)
    assert load.run(300, 1, congested=True) == pytest.approx(300 * 0.7)
    assert load.run(300, 3, congested=True) < 300 * 0.7**3 + 1
    assert load.run(300, 100, congested=True) == 10.0  # the floor: a few calls still get in
    assert load.run(300, 60) == math.inf  # far above the load again: no ceiling


def test_congestion_under_a_fixed_ceiling_lowers_it_and_recovery_stops_at_it() -> None:
    load = Load(ShedController(ShedPolicy(max_call_rate=200)))
    assert load.run(400, 2, congested=True) < 200
    assert load.run(400, 40) == 200


def test_a_counter_that_went_back_measures_nothing() -> None:
    controller = ShedController(ShedPolicy())
    load = Load(controller)
    load.run(300, 4)
    controller.update(3, 0, load.now + 0.5, congested=True)  # Asterisk restarted: from 0
    assert controller.admitted_rate < 10
    assert controller.ceiling == 10.0


def test_the_limit_per_100_ms_window() -> None:
    assert per_window(150) == 15
    assert per_window(10) == 1
    assert per_window(3) == 1  # never zero: a window always lets one call in


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


OFFERED, SHED, SHEDDED = (
    "CALLCONTROL_OFFERED_cc_test_1",
    "CALLCONTROL_SHED_cc_test_1",
    "CALLCONTROL_SHEDDED_cc_test_1",
)


def shedding_with(
    asterisk: FakeAsterisk, policy: ShedPolicy, congested: list[bool], clock: list[float]
) -> DialplanShedding:
    return DialplanShedding(
        asterisk,
        "cc-test.1",
        controller=ShedController(policy),
        congested=lambda: congested[0],
        clock=lambda: clock[0],
    )


async def offer(asterisk: FakeAsterisk, shedding: DialplanShedding, clock: list[float],
                rate: int, ticks: int, shed_share: float = 0.0) -> None:  # fmt: skip
    for _ in range(ticks):
        calls = rate // 2
        asterisk.variables[OFFERED] = str(int(asterisk.variables.get(OFFERED) or 0) + calls)
        shed = int(asterisk.variables.get(SHEDDED) or 0) + round(calls * shed_share)
        asterisk.variables[SHEDDED] = str(shed)
        clock[0] += 0.5
        await shedding.tick()


def test_a_fixed_ceiling_is_published_always_with_its_expiry() -> None:
    asterisk, clock = FakeAsterisk(), [1_000.0]
    shedding = shedding_with(asterisk, ShedPolicy(max_call_rate=150), [False], clock)

    async def scenario() -> None:
        await offer(asterisk, shedding, clock, 20, 3)
        until, limit = asterisk.variables[SHED].split(",")
        assert int(until) == int(clock[0]) + HOLD_S  # renewed every tick
        assert limit == "15"  # 150 calls/s = 15 per 100 ms, before any burst

    asyncio.run(scenario())


def test_an_adaptive_ceiling_is_published_while_congested_and_withdrawn_after() -> None:
    asterisk, clock, congested = FakeAsterisk(), [1_000.0], [False]
    shedding = shedding_with(asterisk, ShedPolicy(), congested, clock)

    async def scenario() -> None:
        asterisk.variables[SHEDDED] = "7"  # counted before this engine started
        await offer(asterisk, shedding, clock, 100, 4)
        assert SHED not in asterisk.variables  # no ceiling: nothing written
        congested[0] = True
        await offer(asterisk, shedding, clock, 400, 4, shed_share=0.5)
        limit = int(asterisk.variables[SHED].split(",")[1])
        assert 1 <= limit < 20  # well below the 200/s admitted: 0.7 x per congested tick
        assert shedding.shed_total == 400  # 4 ticks x 200 calls x 0.5
        congested[0] = False
        await offer(asterisk, shedding, clock, 20, 80)
        assert asterisk.variables[SHED] == ""  # withdrawn once the ceiling is gone
        writes = len(asterisk.writes)
        await offer(asterisk, shedding, clock, 20, 4)
        assert len(asterisk.writes) == writes  # then quiet
        asterisk.variables[SHEDDED] = "3"  # Asterisk restarted: its counter from 0
        await offer(asterisk, shedding, clock, 20, 1)
        asterisk.variables[SHEDDED] = "5"
        await offer(asterisk, shedding, clock, 20, 1)
        assert shedding.shed_total == 402

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


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def test_the_stasis_lag_is_the_delay_beyond_the_usual_whatever_the_clock_offset() -> None:
    clock = Clock()
    lag = IntakeLag(clock=clock)
    offset = -3.0  # Asterisk's clock 3 s ahead of ours: every raw delay looks negative
    for _ in range(20):
        clock.now += 0.05
        lag.observe(clock.now + offset - 0.01)  # created 10 ms before it reached us
    assert lag.lag_s == pytest.approx(0.0, abs=0.001)
    for _ in range(20):
        clock.now += 0.05
        lag.observe(clock.now + offset - 0.61)  # now 600 ms later than usual
    assert lag.lag_s == pytest.approx(0.6, abs=0.02)
    clock.now += 2.0
    assert lag.lag_s == 0.0  # no new call for a while: no news of a lag


def test_the_usual_delay_is_forgotten_after_two_windows() -> None:
    clock = Clock()
    lag = IntakeLag(clock=clock, window_s=10.0)
    lag.observe(clock.now - 0.001)
    for _ in range(60):  # the path got slower for good (a remote Asterisk): it becomes usual
        clock.now += 1.0
        lag.observe(clock.now - 0.2)
    assert lag.lag_s == pytest.approx(0.0, abs=0.001)


def test_after_a_stall_the_calls_that_waited_are_not_taken_for_a_slow_asterisk() -> None:
    clock = Clock()
    lag = IntakeLag(clock=clock)
    for _ in range(10):
        clock.now += 0.05
        lag.observe(clock.now - 0.01)
    clock.now += 15.0  # SIGSTOP: the calls of those 15 s reach the engine now
    lag.observe(clock.now - 14.0)
    assert lag.lag_s > 10
    lag.ignore_for(3.0)
    assert lag.lag_s == 0.0
    for _ in range(10):  # the backlog keeps coming in the next seconds
        clock.now += 0.1
        lag.observe(clock.now - 12.0)
    assert lag.lag_s == 0.0
    clock.now += 3.0
    lag.observe(clock.now - 0.61)  # a real lag afterwards counts again
    assert lag.lag_s == pytest.approx(0.6, abs=0.02)


def test_a_tick_long_overdue_reports_that_the_engine_stood_still() -> None:
    stalls: list[bool] = []

    async def scenario() -> None:
        shedding = DialplanShedding(
            FakeAsterisk(), "cc-test.1", controller=ShedController(ShedPolicy()),
            congested=lambda: False, on_stall=lambda: stalls.append(True),
        )  # fmt: skip
        runner = asyncio.ensure_future(shedding.run(lambda: True))
        await asyncio.sleep(1.2)  # two ticks on time
        assert stalls == []
        time.sleep(1.8)  # noqa: ASYNC251 - the whole process stands still
        await asyncio.sleep(0.2)
        runner.cancel()

    asyncio.run(scenario())
    assert stalls == [True]


def test_after_a_stall_congestion_is_not_judged_while_the_engine_catches_up() -> None:
    asterisk = FakeAsterisk()
    controller = ShedController(ShedPolicy())

    async def scenario() -> None:
        shedding = DialplanShedding(
            asterisk, "cc-test.1", controller=controller, congested=lambda: True,
        )  # fmt: skip
        runner = asyncio.ensure_future(shedding.run(lambda: True))
        await asyncio.sleep(0.05)
        time.sleep(1.8)  # noqa: ASYNC251 - stands still; its catching up looks congested
        for _ in range(4):  # ticks within the calm period
            asterisk.variables[OFFERED] = str(int(asterisk.variables.get(OFFERED) or 0) + 50)
            await asyncio.sleep(0.5)
        runner.cancel()

    asyncio.run(scenario())
    assert controller.ceiling == math.inf  # congested all along, yet no ceiling yet
