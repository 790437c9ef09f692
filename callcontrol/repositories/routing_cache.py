"""An optional fallback for number lookups while the database is away.

``FallbackNumberDirectory`` wraps the ``NumberDirectory`` port
(``CALLCONTROL_CALLS__ROUTING_CACHE_S`` > 0; the composition root leaves it
out at 0, the default). The rules it keeps:

- Every lookup still goes to the database first: while it answers, a change
  (a suspension, a new forwarding rule, a balance below zero) counts at once.
- Each answer is kept with the time it was read. When a lookup *fails*
  (connection refused, timeout, lock), the kept snapshot of that DID is served
  if it is younger than ``max_age_s``; otherwise the failure goes on to the
  router (503). So no snapshot older than ``max_age_s`` is ever used: a number
  suspended at time T stops being forwarded by T + ``max_age_s`` at the
  latest, outage or not.
- The trade-off: during an outage a number suspended (or a balance used up)
  in the last ``max_age_s`` seconds may still be forwarded; and only DIDs
  called within the last ``max_age_s`` seconds are covered. "Unknown number"
  answers are kept too (a 404 stays a 404).
- At most ``max_entries`` DIDs are kept; the oldest half goes when it is full.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from callcontrol.domain.routing import NumberSnapshot
from callcontrol.engine.ports import NumberDirectory

log = structlog.get_logger(__name__)


class FallbackNumberDirectory:
    def __init__(
        self,
        directory: NumberDirectory,
        *,
        max_age_s: float,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive (0 means: do not wrap at all)")
        self._directory = directory
        self._max_age_s = max_age_s
        self._max_entries = max_entries
        self._clock = clock
        self._kept: dict[str, tuple[float, NumberSnapshot | None]] = {}
        self.served_from_cache = 0

    async def snapshot(self, did: str) -> NumberSnapshot | None:
        began = self._clock()  # the age counts from before the read: never younger than it is
        try:
            snapshot = await self._directory.snapshot(did)
        except Exception as exc:
            kept = self._kept.get(did)
            if kept is None or self._clock() - kept[0] >= self._max_age_s:
                raise
            self.served_from_cache += 1
            log.warning(
                "number_served_from_cache",
                did=did,
                age_s=round(self._clock() - kept[0], 3),
                error=str(exc)[:200],
            )
            return kept[1]
        self._keep(did, began, snapshot)
        return snapshot

    def _keep(self, did: str, read_at: float, snapshot: NumberSnapshot | None) -> None:
        if did not in self._kept and len(self._kept) >= self._max_entries:
            by_age = sorted(self._kept.items(), key=lambda item: item[1][0])
            self._kept = dict(by_age[len(by_age) // 2 :])
        self._kept.pop(did, None)
        self._kept[did] = (read_at, snapshot)
