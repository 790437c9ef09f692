"""The arithmetic of shedding new calls before the engine. Pure: no clock of its
own (times are passed in), no I/O.

- ``ShedController``: from the dialplan's two counters (calls offered, calls it
  turned away) and a congestion flag, per tick, the ceiling on new calls per
  second: ``ShedPolicy.max_call_rate`` at most, multiplied down while congested
  (never below the floor), climbing back additively once it is not (AIMD);
  the offered rate follows a burst at once and falls by halves after it;
- ``IntakeLag``: how late new calls reach the engine (Stasis or FastAGI) over
  the least lateness of the last minute or so - the first sign of a saturated
  Asterisk, and what "congested" is made of;
- ``per_window``: the dialplan's limit per tenth of a second for a ceiling.

``engine/admission.py`` publishes the ceiling to Asterisk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from callcontrol.domain import contract


@dataclass(frozen=True, slots=True)
class ShedPolicy:
    max_call_rate: float = 0.0
    """Calls per second let through to Stasis at most; 0 = no fixed ceiling."""
    floor_rate: float = 10.0
    """The ceiling never drops below this while congested."""
    backoff: float = 0.7
    """Ceiling multiplier per congested tick."""
    recovery: float = 0.1
    """Share of the highest ceiling regained per healthy tick."""


class ShedController:
    """Pure: from the dialplan's counters (calls offered, calls it turned away)
    and a congestion flag, per tick, the ceiling on new calls per second
    (``math.inf``: none)."""

    def __init__(self, policy: ShedPolicy) -> None:
        self._policy = policy
        self._top = math.inf if policy.max_call_rate <= 0 else policy.max_call_rate
        self._last: tuple[int, int, float] | None = None
        self.offered_rate = 0.0
        """Calls/s offered to the dialplan: the last tick's when it rose, else halfway."""
        self.admitted_rate = 0.0
        """Calls/s the dialplan let through to Stasis, over the last tick."""
        self.ceiling = self._top

    def update(self, offered_total: int, shed_total: int, now: float, *, congested: bool) -> float:
        last, self._last = self._last, (offered_total, shed_total, now)
        if last is None or now <= last[2]:
            return self.ceiling
        seconds = now - last[2]
        # A counter that went back: Asterisk restarted; this tick measures nothing.
        offered = max(0, offered_total - last[0])
        shed = min(offered, max(0, shed_total - last[1]))
        rate = offered / seconds
        # Fast attack, slow release: the estimate follows a burst at once and falls
        # by halves once it is over (no flapping at its end).
        self.offered_rate = rate if rate >= self.offered_rate else (self.offered_rate + rate) / 2
        self.admitted_rate = (offered - shed) / seconds
        policy = self._policy
        if congested:
            base = min(self.ceiling, max(self.admitted_rate, policy.floor_rate))
            self.ceiling = max(policy.floor_rate, base * policy.backoff)
        elif self.ceiling < self._top:
            top = self._top
            self.ceiling += policy.recovery * (top if top != math.inf else max(self.ceiling, 10.0))
            if top == math.inf and self.ceiling > 2 * self.offered_rate:
                self.ceiling = math.inf  # far above the load: no ceiling at all
            self.ceiling = min(self.ceiling, top)
        return self.ceiling


class IntakeLag:
    """How late new calls reach the engine: from the channel's creation (or the
    dialplan's FastAGI request; Asterisk's clock) to its StasisStart (or the
    request's arrival) here, less the least such delay of the last minute
    or so (which absorbs an offset between the two hosts' clocks). A moving
    average; it reads 0 when no new call came for ``stale_s``.

    It is the earliest sign of a saturated Asterisk (or engine): SIP, the
    dialplan and the event stream are all in it, before any REST request waits.

    ``ignore_for`` drops the measure and takes no sample for a while: the calls
    that waited while no engine ran (a reconnection, a process that stood
    still) arrive late without Asterisk being slow."""

    def __init__(
        self,
        *,
        weight: float = 0.2,
        window_s: float = 30.0,
        stale_s: float = 1.0,
        clock: Callable[[], float],
    ) -> None:
        self._weight = weight
        self._window_s = window_s
        self._stale_s = stale_s
        self._clock = clock
        self._lows: list[float] = [math.inf, math.inf]  # this window's and the last one's
        self._window_began = clock()
        self._last_at = -math.inf
        self._lag_s = 0.0
        self._ignore_until = -math.inf

    def ignore_for(self, seconds: float) -> None:
        self._ignore_until = self._clock() + seconds
        self._lag_s = 0.0

    def observe(self, created_at: float) -> None:
        now = self._clock()
        if now < self._ignore_until:
            return
        if now - self._window_began >= self._window_s:
            self._lows = [math.inf, self._lows[0]]
            self._window_began = now
        sample = now - created_at
        self._lows[0] = min(self._lows[0], sample)
        excess = max(0.0, sample - min(self._lows))
        if now - self._last_at > self._stale_s:
            self._lag_s = excess
        else:
            self._lag_s += (excess - self._lag_s) * self._weight
        self._last_at = now

    @property
    def lag_s(self) -> float:
        return self._lag_s if self._clock() - self._last_at <= self._stale_s else 0.0


def per_window(ceiling: float) -> int:
    """The dialplan's limit per 100 ms window for a ceiling in calls/s."""
    return max(1, round(ceiling / contract.SHED_WINDOWS_PER_S))
