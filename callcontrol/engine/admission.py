"""Admission control: a new call is refused at once when the engine or Asterisk
is saturated, instead of every call collapsing together.

``SheddingRouter`` sits in front of the call router. Before a new call costs a
database lookup it asks ``Admission`` whether there is room; if not, the call
is rejected with ``contract.CAUSE_RETRY_ELSEWHERE`` (chan_pjsip: 503, so the
carrier retries elsewhere) - one REST request and a CDR, nothing else. The
rules it keeps:

- at most ``max_calls`` calls in progress;
- at most ``max_ari_in_flight`` REST requests waiting for Asterisk;
- Asterisk's REST round trip (a moving average of the last ~20 requests)
  below ``max_ari_latency_s``: beyond it Asterisk is already behind, and every
  admitted call would make it later for all the others;
- nothing is remembered: once the load drops the measures drop, and calls are
  admitted again by themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from callcontrol.ari import events as ari
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
    max_ari_in_flight: int = 64
    max_ari_latency_s: float = 0.5


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
