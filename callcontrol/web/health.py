"""``/health`` (ARI connected, database reachable) and ``/metrics`` (Prometheus text).

The spool's depth is shown in both; a non-empty spool alone does not make
``/health`` fail (the engine is doing its job: keeping what the database or
the mail server cannot take yet).

``/metrics`` is written by ``prometheus_client`` from the engine's live state
(read at scrape time) and the app's ``CallMetrics`` (calls by disposition,
decision latency).
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from callcontrol.agi.plan_push import PlanPublisher
from callcontrol.keys import DB_ENGINE, ENGINE, PLAN_PUBLISHER, SPOOL, CallEngine
from callcontrol.metrics import CALL_METRICS, CallMetrics
from callcontrol.repositories.spool import Spool, SpoolKind


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    database_ok = True
    try:
        async with request.app[DB_ENGINE].connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:  # any failure means "not reachable" here
        database_ok = False
    ari_ok = engine.stream.connected
    lease = engine.lease
    body = {
        "ari_connected": ari_ok,
        "database_reachable": database_ok,
        # A standby waits for the active engine's lease (engine/lease.py).
        "role": "active" if lease.held and ari_ok else "standby" if not lease.held else "starting",
        "lease_holder": lease.holder if lease.held else lease.other,
        "spool_depth": request.app[SPOOL].depth.total if SPOOL in request.app else 0,
    }
    if PLAN_PUBLISHER in request.app:  # FastAGI: does the dialplan run the pushed plans?
        body["plans_vouched"] = request.app[PLAN_PUBLISHER].vouching
    return web.json_response(body, status=200 if ari_ok and database_ok else 503)


class _Scrape:
    """One scrape: the live engine's state, then the call path's metrics."""

    def __init__(
        self,
        engine: CallEngine,
        calls: CallMetrics,
        spool: Spool | None,
        plans: PlanPublisher | None = None,
    ) -> None:
        self._engine = engine
        self._calls = calls
        self._spool = spool
        self._plans = plans

    def collect(self) -> Iterator[Metric]:
        dispatcher, stream = self._engine.dispatcher, self._engine.stream
        yield GaugeMetricFamily(
            "callcontrol_active_calls", "Calls in progress", value=dispatcher.active_calls
        )
        yield CounterMetricFamily(
            "callcontrol_calls_started",
            "Calls handed to the engine",
            value=dispatcher.calls_started,
        )
        yield CounterMetricFamily(
            "callcontrol_ari_events", "ARI events received", value=dispatcher.events_received
        )
        yield CounterMetricFamily(
            "callcontrol_ari_reconnects", "Reconnections to ARI", value=stream.reconnects
        )
        yield CounterMetricFamily(
            "callcontrol_ari_connect_failures",
            "Attempts to connect the ARI event stream that failed",
            value=stream.connect_failures,
        )
        yield GaugeMetricFamily(
            "callcontrol_ari_connected", "1 while connected to ARI", value=int(stream.connected)
        )
        yield GaugeMetricFamily(
            "callcontrol_ari_lease_held",
            "1 while this engine holds its app's lease (0: standby)",
            value=int(self._engine.lease.held),
        )
        yield CounterMetricFamily(
            "callcontrol_calls_adopted",
            "Calls taken over from Asterisk after a restart or takeover",
            value=dispatcher.calls_adopted,
        )
        shed = CounterMetricFamily(
            "callcontrol_calls_shed",
            "New calls refused with 503 by admission control, by reason",
            labels=["reason"],
        )
        for reason in ("overload_calls", "overload_ari_backlog", "overload_ari_slow"):
            shed.add_metric([reason], self._engine.router.shed[reason])
        shed.add_metric(["dialplan"], self._engine.dialplan_shedding.shed_total)
        yield shed
        lag = dispatcher.stasis_lag
        yield GaugeMetricFamily(
            "callcontrol_stasis_lag_seconds",
            "How much later than usual new calls reach the engine (moving average)",
            value=lag.lag_s if lag is not None else 0.0,
        )
        ceiling = self._engine.dialplan_shedding.ceiling
        yield GaugeMetricFamily(
            "callcontrol_call_rate_ceiling",
            "New calls per second the dialplan lets through to Stasis (0: no ceiling)",
            value=0 if ceiling == float("inf") else ceiling,
        )
        yield CounterMetricFamily(
            "callcontrol_orphan_bridges_destroyed",
            "Bridges of ours no call owned, destroyed by reconciliation",
            value=dispatcher.bridges_destroyed,
        )
        if self._spool is not None:
            yield from spool_metrics(self._spool)
        if self._plans is not None:
            yield GaugeMetricFamily(
                "callcontrol_agi_plans_vouched",
                "1 while the FastAGI dialplan may run the plans this engine pushed",
                value=int(self._plans.vouching),
            )
            yield CounterMetricFamily(
                "callcontrol_agi_plans_pushed",
                "DID plans written into (or cleared from) Asterisk's AstDB",
                value=self._plans.plans_pushed,
            )
        yield from self._calls.collect()


def spool_metrics(spool: Spool) -> Iterator[Metric]:
    depth = spool.depth
    families: tuple[GaugeMetricFamily | CounterMetricFamily, ...] = (
        GaugeMetricFamily(
            "callcontrol_spool_depth",
            "Entries held in the local spool (dead ones included), by kind",
            labels=["kind"],
        ),
        GaugeMetricFamily(
            "callcontrol_spool_dead",
            "Spool entries their target refused too often (kept, not replayed), by kind",
            labels=["kind"],
        ),
        CounterMetricFamily(
            "callcontrol_spool_journaled",
            "Work journaled in the spool because its target failed, by kind",
            labels=["kind"],
        ),
        CounterMetricFamily(
            "callcontrol_spool_replayed",
            "Spooled entries replayed into their target, by kind",
            labels=["kind"],
        ),
    )
    sources = (depth.held, depth.dead, spool.journaled, spool.replayed)
    for family, values in zip(families, sources, strict=True):
        for kind in SpoolKind:
            family.add_metric([kind.value], values[kind])
        yield family


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text (or OpenMetrics, if the scraper asks for it)."""
    app = request.app
    scrape = _Scrape(
        app[ENGINE], app[CALL_METRICS], app[SPOOL] if SPOOL in app else None,
        app[PLAN_PUBLISHER] if PLAN_PUBLISHER in app else None,
    )  # fmt: skip
    return await make_aiohttp_handler(scrape)(request)


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
