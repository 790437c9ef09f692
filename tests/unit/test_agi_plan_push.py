"""The plan publisher against fakes of its three ports: what it writes into
Asterisk, when it vouches for it, and how it starts over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from callcontrol.agi.astdb import AstDbWriteError
from callcontrol.agi.plan_push import PlanPublisher, PlanTiming, dialplan_keys
from callcontrol.domain.routing import ForwardingPlan, PlannedLeg, Reject
from callcontrol.domain.vocabulary import CallDirection, DestinationType, ForwardingMode
from callcontrol.engine.routers import RoutedCall

APP = "cc-test"
FAMILY = "callcontrol_plans_cc_test"
VARIABLE = "CALLCONTROL_PLANS_cc_test"
FOLDER = "/media/voicemail-agi/"


def forwarding(did: str, target: str = "sip:a@127.0.0.3") -> RoutedCall:
    leg = PlannedLeg(1, DestinationType.SIP_URI, target, f"PJSIP/ext/{target}", 20)
    plan = ForwardingPlan(
        number_id=1, account_id=2, did=did, mode=ForwardingMode.SEQUENTIAL, legs=(leg,)
    )
    return RoutedCall(CallDirection.INBOUND, plan, did, None)


class Plans:
    def __init__(self) -> None:
        self.of: dict[str, RoutedCall | None] = {}
        self.fail = False

    async def standing_plan(self, did: str) -> RoutedCall | None:
        if self.fail:
            raise ConnectionError("database away")
        return self.of.get(did)


class Changes:
    def __init__(self) -> None:
        self.numbers: list[str] = []
        self.head = 0
        self.changed: frozenset[str] | None = frozenset()
        self.pruned: list[datetime] = []

    async def cursor(self) -> int:
        return self.head

    async def since(self, cursor: int) -> tuple[int, frozenset[str] | None]:
        changed, self.changed = self.changed, frozenset()
        return self.head, changed

    async def routed_numbers(self) -> list[str]:
        return list(self.numbers)

    async def prune(self, older_than: datetime) -> int:
        self.pruned.append(older_than)
        return 0


class Asterisk:
    """Its global variables (over ARI) and its AstDB (over FastAGI)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.astdb: dict[tuple[str, str], str] = {}
        self.writes = 0
        self.batches = 0
        self.fail_writes = False

    async def set_global_variable(self, name: str, value: str) -> None:
        self.values[name] = value
        self.writes += 1

    async def write(self, family: str, entries: Sequence[tuple[str, str | None]]) -> None:
        if self.fail_writes:
            raise AstDbWriteError("not confirmed")
        self.batches += 1
        for key, value in entries:
            self.writes += 1
            if value is None:
                self.astdb.pop((family, key), None)
            else:
                self.astdb[family, key] = value

    def plan(self, key: str) -> str:
        return self.astdb.get((FAMILY, key), "<none>")


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_694_800.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Bed:
    plans: Plans = field(default_factory=Plans)
    changes: Changes = field(default_factory=Changes)
    asterisk: Asterisk = field(default_factory=Asterisk)
    clock: Clock = field(default_factory=Clock)

    def publisher(self) -> PlanPublisher:
        return PlanPublisher(
            plans=self.plans, changes=self.changes, asterisk=self.asterisk,
            astdb=self.asterisk, app=APP,
            max_hops=3, voicemail_folder=FOLDER,
            timing=PlanTiming(poll_s=0.1, renew_s=1.0, lease_s=5.0), clock=self.clock,
            new_generation=iter([1764694800, 1764694800, 1764694801]).__next__,
        )  # fmt: skip


@pytest.fixture
def bed() -> Bed:
    return Bed()


async def test_the_first_step_pushes_every_plan_then_vouches_for_them(bed: Bed) -> None:
    bed.changes.numbers = ["+4930111", "+4930222", "+4930333"]
    bed.plans.of = {"+4930111": forwarding("+4930111"), "+4930222": None}
    bed.plans.of["+4930333"] = RoutedCall(
        CallDirection.INBOUND, Reject(21, "suspended"), "+4930333", None
    )
    pub = bed.publisher()
    await pub.tick(True)
    for key in dialplan_keys("+4930111"):
        assert bed.asterisk.plan(key).startswith("1764694800|CC_PLAN=1,")
        assert bed.asterisk.plan(key).endswith(",CC_ACTION=forward")
    assert bed.asterisk.plan("4930333").endswith("CC_CAUSE=21,CC_PHASE=done,CC_ACTION=reject")
    assert bed.asterisk.plan("+4930222") == "<none>", "no plan: nothing written"
    assert bed.asterisk.values[VARIABLE] == f"1764694800,1764694805,3,{FOLDER}"
    version = int(bed.asterisk.plan("4930111").split("CC_PLAN=")[1].split(",")[0])
    decided = pub.decision_of(version)
    assert decided is not None and decided.number == "+4930111"
    assert pub.vouching and bed.changes.pruned


async def test_a_change_is_pushed_with_a_new_version_and_the_old_one_still_resolves(
    bed: Bed,
) -> None:
    bed.changes.numbers = ["+4930111"]
    bed.plans.of = {"+4930111": forwarding("+4930111")}
    pub = bed.publisher()
    await pub.tick(True)
    bed.plans.of["+4930111"] = forwarding("+4930111", target="sip:b@127.0.0.4")
    bed.changes.changed, bed.changes.head = frozenset({"+4930111"}), 5
    await pub.tick(True)
    assert "CC_PLAN=2," in bed.asterisk.plan("+4930111") and "sip:b@127.0.0.4" in bed.asterisk.plan(
        "4930111"
    )
    first = pub.decision_of(1)
    assert first is not None and isinstance(first.decision, ForwardingPlan)
    assert first.decision.legs[0].target == "sip:a@127.0.0.3", "a call still on plan 1"


async def test_an_unchanged_plan_is_not_written_again_and_a_lost_one_is_cleared(bed: Bed) -> None:
    bed.changes.numbers = ["+4930111"]
    bed.plans.of = {"+4930111": forwarding("+4930111")}
    pub = bed.publisher()
    await pub.tick(True)
    writes = bed.asterisk.writes
    bed.changes.changed = frozenset({"+4930111"})  # e.g. an account change that routes the same
    await pub.tick(True)
    assert bed.asterisk.writes == writes, "same plan, no renewal due: no request"
    bed.plans.of["+4930111"] = None  # a PSTN destination added: every call asks again
    bed.changes.changed = frozenset({"+4930111"})
    await pub.tick(True)
    assert bed.asterisk.plan("+4930111") == "<none>" and bed.asterisk.plan("4930111") == "<none>"


async def test_vouching_is_renewed_every_second_and_stops_when_not_serving(bed: Bed) -> None:
    pub = bed.publisher()
    await pub.tick(True)
    bed.clock.now += 0.5
    await pub.tick(True)
    assert bed.asterisk.values[VARIABLE].split(",")[1] == "1764694805", "not renewed yet"
    bed.clock.now += 0.6
    await pub.tick(True)
    assert bed.asterisk.values[VARIABLE].split(",")[1] == "1764694806"
    await pub.tick(False)
    assert not pub.vouching
    bed.clock.now += 10
    await pub.tick(False)
    assert bed.asterisk.values[VARIABLE].split(",")[1] == "1764694806", "left to run out"


async def test_a_failure_starts_a_new_generation_that_pushes_everything_again(bed: Bed) -> None:
    bed.changes.numbers = ["+4930111"]
    bed.plans.of = {"+4930111": forwarding("+4930111")}
    pub = bed.publisher()
    await pub.tick(True)
    bed.plans.fail = True
    bed.changes.changed = frozenset({"+4930111"})
    vouched = bed.asterisk.values[VARIABLE]
    assert await pub.tick(True) is False
    assert not pub.vouching and pub.generation == 1764694801, "never the same generation again"
    assert bed.asterisk.values[VARIABLE] == vouched, "a database outage: left to the lease"
    bed.plans.fail = False
    await pub.tick(True)
    assert bed.asterisk.plan("+4930111").startswith("1764694801|"), "pushed again, new generation"
    assert bed.asterisk.values[VARIABLE].startswith("1764694801,")


async def test_everything_changed_pushes_every_number(bed: Bed) -> None:
    pub = bed.publisher()
    await pub.tick(True)
    bed.changes.numbers = ["+4930444"]
    bed.plans.of = {"+4930444": forwarding("+4930444")}
    bed.changes.changed = None  # e.g. a rate sheet changed
    await pub.tick(True)
    assert bed.asterisk.plan("+4930444").startswith("1764694800|")


async def test_withdraw_stops_vouching_at_once(bed: Bed) -> None:
    pub = bed.publisher()
    await pub.tick(True)
    await pub.withdraw()
    assert bed.asterisk.values[VARIABLE] == "" and not pub.vouching


def test_a_voicemail_folder_that_would_break_the_variable_is_refused(bed: Bed) -> None:
    with pytest.raises(ValueError, match="no ','"):
        PlanPublisher(
            plans=bed.plans, changes=bed.changes, asterisk=bed.asterisk, astdb=bed.asterisk,
            app=APP,
            max_hops=3, voicemail_folder="/a,b/", clock=bed.clock,
        )  # fmt: skip


async def test_a_batch_asterisk_did_not_confirm_is_pushed_again_in_a_new_generation(
    bed: Bed,
) -> None:
    bed.changes.numbers = ["+4930111"]
    bed.plans.of = {"+4930111": forwarding("+4930111")}
    pub = bed.publisher()
    await pub.tick(True)
    assert pub.vouching
    bed.changes.changed = frozenset({"+4930111"})
    bed.plans.of = {"+4930111": forwarding("+4930111", target="sip:b@127.0.0.4")}
    bed.asterisk.fail_writes = True
    assert await pub.tick(True) is False
    assert not pub.vouching and bed.asterisk.values[VARIABLE] == "", "withdrawn at once"
    bed.asterisk.fail_writes = False
    await pub.tick(True)
    assert bed.asterisk.plan("+4930111").startswith("1764694801|"), "pushed, not skipped as same"
    assert "sip:b@127.0.0.4" in bed.asterisk.plan("+4930111")
    assert pub.vouching and bed.asterisk.values[VARIABLE].startswith("1764694801,")
