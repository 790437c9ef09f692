"""The call path's Prometheus metrics, and the decorators that feed them.

``CallMetrics`` owns its own ``CollectorRegistry`` (one per app, never the
library's global one) with:
- ``callcontrol_calls_total{direction, disposition}``: a counter, one per
  finished call, every label pair present from the start (0) so ``rate()`` and
  alerts see a series before its first call;
- ``callcontrol_call_decision_seconds``: a histogram of how long the router
  takes to decide a new call (the database lookup and the pure decision),
  buckets from 0.1 ms to 1 s.

The engine knows nothing of metrics: the composition root wraps its ports.
``CountingLedger`` counts each record handed to the ``CallLedger`` (before it
is stored: a call whose CDR could not be written still happened), and
``TimedRouter`` times each ``CallRouter.route``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric

from callcontrol.ari.events import StasisStart
from callcontrol.domain.call_events import CallRecord
from callcontrol.domain.vocabulary import CallDirection, Disposition
from callcontrol.engine.ports import CallLedger
from callcontrol.engine.routers import CallRouter, RoutedCall

DECISION_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class CallMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._calls = Counter(
            "callcontrol_calls_total",
            "Finished calls by direction and disposition",
            ["direction", "disposition"],
            registry=self.registry,
        )
        for direction in CallDirection:
            for disposition in Disposition:
                self._calls.labels(direction.value, disposition.value)
        self._decision = Histogram(
            "callcontrol_call_decision_seconds",
            "Time the router took to decide a new call",
            buckets=DECISION_BUCKETS_S,
            registry=self.registry,
        )

    def call_finished(self, direction: CallDirection, disposition: Disposition) -> None:
        self._calls.labels(direction.value, disposition.value).inc()

    def call_decided(self, seconds: float) -> None:
        self._decision.observe(seconds)

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class CountingLedger:
    """A ``CallLedger`` that counts each finished call, then hands it on to be stored."""

    def __init__(self, ledger: CallLedger, *, metrics: CallMetrics) -> None:
        self._ledger = ledger
        self._metrics = metrics

    async def record_call(self, record: CallRecord) -> None:
        self._metrics.call_finished(record.direction, record.disposition)
        await self._ledger.record_call(record)


class TimedRouter:
    """A ``CallRouter`` that observes how long each decision took (even one that raised)."""

    def __init__(
        self,
        router: CallRouter,
        *,
        metrics: CallMetrics,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._router = router
        self._metrics = metrics
        self._clock = clock

    async def route(self, start: StasisStart) -> RoutedCall:
        began = self._clock()
        try:
            return await self._router.route(start)
        finally:
            self._metrics.call_decided(self._clock() - began)


CALL_METRICS = web.AppKey("call_metrics", CallMetrics)
