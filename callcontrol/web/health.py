"""``/health`` (ARI connected, database reachable) and ``/metrics`` (Prometheus text).

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

from callcontrol.keys import DB_ENGINE, ENGINE, CallEngine
from callcontrol.metrics import CALL_METRICS, CallMetrics


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
    }
    return web.json_response(body, status=200 if ari_ok and database_ok else 503)


class _Scrape:
    """One scrape: the live engine's state, then the call path's metrics."""

    def __init__(self, engine: CallEngine, calls: CallMetrics) -> None:
        self._engine = engine
        self._calls = calls

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
        yield shed
        yield CounterMetricFamily(
            "callcontrol_orphan_bridges_destroyed",
            "Bridges of ours no call owned, destroyed by reconciliation",
            value=dispatcher.bridges_destroyed,
        )
        yield from self._calls.collect()


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text (or OpenMetrics, if the scraper asks for it)."""
    scrape = _Scrape(request.app[ENGINE], request.app[CALL_METRICS])
    return await make_aiohttp_handler(scrape)(request)


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
