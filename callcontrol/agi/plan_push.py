"""Plans pushed into Asterisk: the FastAGI dialplan carries out a DID's
standing plan with no request to the engine.

A forwarded call through FastAGI costs a request to the engine (its lookup
and decision) on the same cores as Asterisk; most calls to a DID get the same
decision until something in the database changes. So the engine keeps each
DID's *standing plan* in Asterisk's own database (AstDB, written over FastAGI:
``astdb.AgiAstDbWriter``) and the dialplan
(``callcontrol-agi-decide``) runs it straight away. Rules kept here:

- Only a decision that depends on nothing but the database is pushed
  (``InboundRouter.standing_plan``): no PSTN leg (its cap is the balance at
  call time), no test number (its hour runs out), a known number. Every other
  call still asks the engine; so do outbound calls and calls at the hop
  limit (a forwarding loop; with fewer hops the dialplan adds one per leg).
- The database logs every change that a snapshot depends on, by triggers,
  whoever writes it (API, CLI, billing run: ``repositories/routing_changes``);
  the publisher reads that log every ``poll_s`` and pushes the changed DIDs'
  plans again (or clears them). A change counts within about ``poll_s`` plus
  one ARI request - not at once, as on a lookup per call.
- The engine vouches for its plans in one global variable,
  ``CALLCONTROL_PLANS_<app>`` = ``<generation>,<until>,<max hops>,<voicemail
  folder>``, renewed every ``renew_s`` while it follows the log. The dialplan
  uses a plan only before ``until`` (``lease_s`` after the last renewal), so
  an engine that dies, freezes or loses its database stops vouching and
  within ``lease_s`` every call asks again (and gets 503 if nobody answers):
  no plan is used more than ``lease_s`` after the engine last saw the log.
- The generation is drawn at random (ten digits) when a publisher starts and
  again whenever it starts over. A plan's value begins with it; plans of
  another engine (or of this one before a failure) are never used by the
  dialplan once this generation is vouched for, whatever they left in AstDB:
  every DID's plan is pushed before a generation is vouched for the first
  time. (Random, not the start time: two engines started in the same second,
  one taking over from the other, must not share a generation.)
- Every plan pushed gets a version, carried by the call (``CC_PLAN``) into its
  hangup report, so the CDR is built from the decision the call ran
  (``decision_of``); a version this process does not know (it restarted) is
  routed again from the report, as for any call decided by another engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from callcontrol.agi.astdb import AstDbWriteError
from callcontrol.agi.plans import GENERATION_DIGITS, standing_plan_value
from callcontrol.domain.contract import app_variable
from callcontrol.engine.routers import RoutedCall

log = structlog.get_logger(__name__)

PLANS_VARIABLE = "CALLCONTROL_PLANS_"
PLANS_FAMILY = "callcontrol_plans_"
_KEEP_VERSIONS = 50_000
_PUSH_CONCURRENCY = 8
_PRUNE_EVERY_S = 600.0
_PRUNE_AFTER = timedelta(hours=1)
_RETRY_AFTER_S = 1.0


class StandingPlans(Protocol):
    async def standing_plan(self, did: str) -> RoutedCall | None: ...


class RoutingChanges(Protocol):
    """``repositories/routing_changes.RoutingChangeFeed``."""

    async def cursor(self) -> int: ...

    async def since(self, cursor: int) -> tuple[int, frozenset[str] | None]: ...

    async def routed_numbers(self) -> list[str]: ...

    async def prune(self, older_than: datetime) -> int: ...


class AsteriskVariables(Protocol):
    async def set_global_variable(self, name: str, value: str) -> None: ...


class AstDb(Protocol):
    """``astdb.AgiAstDbWriter``: entries written (None: deleted) once confirmed."""

    async def write(self, family: str, entries: Sequence[tuple[str, str | None]]) -> None: ...


@dataclass(frozen=True, slots=True)
class PlanTiming:
    poll_s: float = 0.1
    renew_s: float = 1.0
    lease_s: float = 5.0


def dialplan_keys(did: str) -> tuple[str, str]:
    """The AstDB keys of a DID: ``${EXTEN}`` as the carrier sends it, with or
    without the ``+`` (the engine takes both as the same E.164 number)."""
    return did, did.removeprefix("+")


class PlanPublisher:
    def __init__(
        self,
        *,
        plans: StandingPlans,
        changes: RoutingChanges,
        asterisk: AsteriskVariables,
        astdb: AstDb,
        app: str,
        max_hops: int,
        voicemail_folder: str,
        timing: PlanTiming = PlanTiming(),
        clock: Callable[[], float] = time.time,
        new_generation: Callable[[], int] = lambda: secrets.randbelow(10**GENERATION_DIGITS),
    ) -> None:
        if any(c in voicemail_folder for c in ",|"):
            raise ValueError(f"voicemail folder {voicemail_folder!r}: no ',' or '|' in it")
        self._plans = plans
        self._changes = changes
        self._asterisk = asterisk
        self._astdb = astdb
        self._variable = app_variable(PLANS_VARIABLE, app)
        self._family = app_variable(PLANS_FAMILY, app)
        self._max_hops = max_hops
        self._folder = voicemail_folder
        self._timing = timing
        self._clock = clock
        self._new_generation = new_generation
        self.generation = new_generation()
        self._version = 0
        self._decisions: OrderedDict[int, RoutedCall] = OrderedDict()
        self._pushed: dict[str, RoutedCall] = {}
        self._cursor: int | None = None  # None: every plan is to be pushed (again)
        self._vouched_at: float | None = None
        self._pruned_at = 0.0
        self.plans_pushed = 0
        self._failures = 0

    @property
    def vouching(self) -> bool:
        return self._vouched_at is not None

    def decision_of(self, version: int) -> RoutedCall | None:
        """The decision a pushed plan's call ran (None: not pushed by this process,
        or long ago)."""
        return self._decisions.get(version)

    async def run(self, serving: Callable[[], bool]) -> None:
        """Follow the database's changes while ``serving()``; on any failure stop
        vouching (the plans run out by themselves) and start over."""
        while True:
            followed = await self.tick(serving())
            await asyncio.sleep(self._timing.poll_s if followed else _RETRY_AFTER_S)

    async def tick(self, serving: bool) -> bool:
        """One round; False when it failed (the caller waits longer before the next)."""
        try:
            if serving:
                await self.step()
            else:
                self._stop_vouching()
        except Exception as exc:
            self._failures += 1
            if self._failures == 1 or self._failures % 60 == 0:  # not every second of an outage
                log.warning(
                    "plans_not_followed", failures=self._failures,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )  # fmt: skip
            self._start_over()
            if isinstance(exc, AstDbWriteError):
                # A change the dialplan may not have: withdraw rather than let the
                # old plan run out its lease. (A database outage is left to the
                # lease: those plans were right when the engine last saw the log.)
                with contextlib.suppress(Exception):
                    await self._asterisk.set_global_variable(self._variable, "")
            return False
        if self._failures:
            log.info("plans_followed_again", failures=self._failures)
            self._failures = 0
        return True

    async def step(self) -> None:
        """Push what changed (everything, the first time), then vouch if due."""
        if self._cursor is None:
            cursor = await self._changes.cursor()  # before reading: changes meanwhile come again
            numbers = await self._changes.routed_numbers()
            await self._push_all(numbers)
            self._cursor = cursor
            log.info("plans_pushed_all", numbers=len(numbers), generation=self.generation)
        else:
            cursor, changed = await self._changes.since(self._cursor)
            if changed is None:
                changed = frozenset(await self._changes.routed_numbers())
            await self._push_all(changed)
            self._cursor = cursor
        now = self._clock()
        if self._vouched_at is None or now - self._vouched_at >= self._timing.renew_s:
            until = int(now + self._timing.lease_s)
            generation = f"{self.generation:0{GENERATION_DIGITS}d}"
            value = f"{generation},{until},{self._max_hops},{self._folder}"
            await self._asterisk.set_global_variable(self._variable, value)
            self._vouched_at = now
        if now - self._pruned_at >= _PRUNE_EVERY_S:
            self._pruned_at = now
            await self._changes.prune(datetime.now(UTC) - _PRUNE_AFTER)

    async def withdraw(self) -> None:
        """Stop vouching at once (a clean stop: the next engine pushes its own)."""
        self._stop_vouching()
        await self._asterisk.set_global_variable(self._variable, "")

    def _start_over(self) -> None:
        """A new generation: whatever this one pushed (a write may have failed
        half-way) is never used again; every plan is pushed anew."""
        self._stop_vouching()
        self._cursor = None
        self._pushed.clear()
        generation = self._new_generation()
        while generation == self.generation:
            generation = self._new_generation()
        self.generation = generation

    def _stop_vouching(self) -> None:
        if self._vouched_at is not None:
            log.info("plans_not_vouched_for", generation=self.generation)
        self._vouched_at = None

    async def _push_all(self, numbers: Iterable[str]) -> None:
        """Every changed plan of ``numbers`` in one batch of AstDB writes; what
        was pushed is remembered only once Asterisk confirmed the batch."""
        gate = asyncio.Semaphore(_PUSH_CONCURRENCY)

        async def plan_of(did: str) -> tuple[str, RoutedCall | None]:
            async with gate:
                return did, await self._plans.standing_plan(did)

        planned = await asyncio.gather(*(plan_of(did) for did in numbers))
        entries: list[tuple[str, str | None]] = []
        pushed: dict[str, RoutedCall | None] = {}
        for did, routed in planned:
            before = self._pushed.get(did)
            if routed is None and before is None:
                continue  # nothing of this generation to clear (an earlier one's is unused)
            if routed is not None and before is not None and routed.decision == before.decision:
                continue  # the same plan (a change that did not touch this DID's routing)
            value = None
            if routed is not None:
                self._version += 1
                value = standing_plan_value(self.generation, self._version, routed.decision)
                self._decisions[self._version] = routed
            entries.extend((key, value) for key in dialplan_keys(did))
            pushed[did] = routed
        while len(self._decisions) > _KEEP_VERSIONS:
            self._decisions.popitem(last=False)
        await self._astdb.write(self._family, entries)
        for did, routed in pushed.items():
            if routed is None:
                self._pushed.pop(did, None)
            else:
                self._pushed[did] = routed
        self.plans_pushed += len(pushed)
