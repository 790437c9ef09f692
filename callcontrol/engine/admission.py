"""Admission control: a new call is refused at once when the engine or Asterisk
is saturated, instead of every call collapsing together.

``SheddingRouter`` sits in front of the call router. Before a new call costs a
database lookup it asks ``Admission`` whether there is room; if not, the call
is rejected with ``contract.CAUSE_RETRY_ELSEWHERE`` (chan_pjsip: 503, so the
carrier retries elsewhere) - one REST request and a CDR, nothing else. The
rules it keeps:

- at most ``max_calls`` calls in progress;
- at most ``max_ari_in_flight`` REST requests waiting for Asterisk;
- Asterisk's REST round trip (a moving average of the last ~40 requests)
  below ``max_ari_latency_s``: beyond it Asterisk is already behind, and every
  admitted call would make it later for all the others;
- nothing is remembered: once the load drops the measures drop, and calls are
  admitted again by themselves.

Refusing a call in the engine still costs Asterisk a channel in Stasis, an
event and a REST request. Under a burst of several hundred calls a second that
is enough to saturate Asterisk itself, so the engine also sheds *before*
Stasis: ``ShedController`` keeps a ceiling on new calls per second and
``DialplanShedding`` publishes it as the global variable
``contract.SHED_VARIABLE``; ``[callcontrol-admission]`` counts the calls of
each 100 ms and turns away with 503 those beyond it, from the first call of a
burst on, with no round trip to the engine. The ceiling is ``max_call_rate``
(calls/s, 0 = none) and drops multiplicatively below the rate admitted while
``Admission`` reports congestion, climbing back additively once it is gone
(AIMD). Every published value carries its own expiry, so an engine that stops
or dies stops shedding within ``HOLD_S`` seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from callcontrol.ari import events as ari
from callcontrol.ari.errors import AriError
from callcontrol.domain import contract
from callcontrol.domain.shedding import ShedController, per_window
from callcontrol.engine.ports import STALL_MARGIN_S
from callcontrol.engine.routers import DirectionRouter, RoutedCall

log = structlog.get_logger(__name__)


class AriLoad(Protocol):
    @property
    def in_flight(self) -> int: ...
    @property
    def latency_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_calls: int = 2000
    max_ari_in_flight: int = 150
    max_ari_latency_s: float = 1.0


class Admission:
    def __init__(
        self, limits: AdmissionLimits, *, active_calls: Callable[[], int], ari: AriLoad
    ) -> None:
        self._limits = limits
        self._active_calls = active_calls
        self._ari = ari

    def refusal(self) -> str | None:
        """Why a new call cannot be taken now, or None when it can."""
        limits = self._limits
        if self._active_calls() > limits.max_calls:
            return "overload_calls"
        if self._ari.in_flight > limits.max_ari_in_flight:
            return "overload_ari_backlog"
        if self._ari.latency_s > limits.max_ari_latency_s:
            return "overload_ari_slow"
        return None


class SheddingRouter:
    """A ``CallRouter`` that refuses new calls while ``Admission`` says so."""

    def __init__(self, *, inner: DirectionRouter, admission: Admission) -> None:
        self._inner = inner
        self._admission = admission
        self.shed: Counter[str] = Counter()
        """Calls refused, by reason (for /metrics)."""

    async def route(self, start: ari.StasisStart) -> RoutedCall:
        reason = self._admission.refusal()
        if reason is None:
            return await self._inner.route(start)
        if not self.shed:
            log.warning("calls_shed", reason=reason)
        self.shed[reason] += 1
        return self._inner.refuse(start, reason)


# ---- shedding before Stasis ---------------------------------------------------

TICK_S = 0.5
"""How often the dialplan's counters are read and the ceiling published."""
HOLD_S = 2
"""How long a published ceiling holds in Asterisk without being renewed."""
STALL_IGNORE_S = 3.0
"""After a stall, new calls' lateness is not a congestion sample for this long."""


class GlobalVariables(Protocol):
    async def get_global_variable(self, name: str) -> str: ...
    async def set_global_variable(self, name: str, value: str) -> None: ...


class DialplanShedding:
    """Publishes ``ShedController``'s ceiling for the dialplan, every ``TICK_S``
    while this engine serves the app (connected and holding the lease)."""

    def __init__(
        self,
        asterisk: GlobalVariables,
        app: str,
        *,
        controller: ShedController,
        congested: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        self._on_stall = on_stall
        self._calm_until = -math.inf
        self._asterisk = asterisk
        self._controller = controller
        self._congested = congested
        self._clock = clock
        self._shed_var = contract.app_variable(contract.SHED_VARIABLE, app)
        self._offered_var = contract.app_variable(contract.OFFERED_VARIABLE, app)
        self._count_var = contract.app_variable(contract.SHED_COUNT_VARIABLE, app)
        self._published: int | None = None
        self._shedding = False
        self._count_seen: int | None = None
        self.shed_total = 0
        """Calls the dialplan turned away while this engine watched (from its counter)."""

    @property
    def ceiling(self) -> float:
        return self._controller.ceiling

    async def tick(self) -> None:
        offered = _counter(await self._asterisk.get_global_variable(self._offered_var))
        counted = _counter(await self._asterisk.get_global_variable(self._count_var))
        now = self._clock()
        if self._count_seen is None or counted < self._count_seen:  # first, or Asterisk restarted
            self._count_seen = counted
        self.shed_total += counted - self._count_seen
        self._count_seen = counted
        congested = now >= self._calm_until and self._congested()
        ceiling = self._controller.update(offered, counted, now, congested=congested)
        shedding = self._controller.offered_rate > ceiling
        if shedding != self._shedding:
            self._shedding = shedding
            if shedding:
                log.warning(
                    "calls_shed_in_dialplan",
                    ceiling_per_s=round(ceiling, 1),
                    offered_per_s=round(self._controller.offered_rate, 1),
                )
            else:
                log.info("calls_shed_in_dialplan_stopped", shed_total=self.shed_total)
        limit = per_window(ceiling) if ceiling != math.inf else None
        if limit is None and self._published is None:
            return
        value = f"{int(now) + HOLD_S},{limit}" if limit is not None else ""
        await self._asterisk.set_global_variable(self._shed_var, value)
        self._published = limit

    async def run(self, serving: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            late_s = loop.time() - due
            if late_s > STALL_MARGIN_S:
                # This process stood still (SIGSTOP, a frozen VM): the calls that
                # waited meanwhile arrive late now, and the engine's catching up
                # fills its REST queue, without Asterisk being slow. Congestion
                # is not judged for a while (a fixed ceiling still holds).
                log.info("engine_stalled", late_s=round(late_s, 1))
                self._calm_until = self._clock() + STALL_IGNORE_S
                if self._on_stall is not None:
                    self._on_stall()
            if not serving():
                self._published = None  # whatever was published runs out by itself
                continue
            try:
                await self.tick()
            except (TimeoutError, AriError) as exc:
                log.warning("shed_publish_failed", error=str(exc) or type(exc).__name__)


def _counter(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0
