"""``/health`` (ARI connected, database reachable) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from callcontrol.keys import DB_ENGINE, ENGINE


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    database_ok = True
    try:
        async with request.app[DB_ENGINE].connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:  # any failure means "not reachable" here
        database_ok = False
    ari_ok = engine.stream.connected
    body = {"ari_connected": ari_ok, "database_reachable": database_ok}
    return web.json_response(body, status=200 if ari_ok and database_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    lines = [
        "# TYPE callcontrol_active_calls gauge",
        f"callcontrol_active_calls {engine.dispatcher.active_calls}",
        "# TYPE callcontrol_calls_started_total counter",
        f"callcontrol_calls_started_total {engine.dispatcher.calls_started}",
        "# TYPE callcontrol_ari_events_total counter",
        f"callcontrol_ari_events_total {engine.dispatcher.events_received}",
        "# TYPE callcontrol_ari_reconnects_total counter",
        f"callcontrol_ari_reconnects_total {engine.stream.reconnects}",
        "# TYPE callcontrol_ari_connected gauge",
        f"callcontrol_ari_connected {int(engine.stream.connected)}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
