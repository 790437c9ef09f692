"""The Grafana dashboard and the Prometheus alert rules in ``deploy/`` parse, and
every metric they name is one the engine really exports: a ``/metrics`` scraped
from the whole app (``build_app``, as ``callcontrol serve`` runs it) against a
fake Asterisk and a real database. A renamed metric fails this test."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from support.fake_ari import FakeAri

from callcontrol.app import build_app
from callcontrol.settings import AmiSettings, AriSettings, DatabaseSettings, MediaSettings, Settings
from provisioning.settings import ProvisioningSettings

DEPLOY = Path(__file__).parents[2] / "deploy"
METRIC = re.compile(r"\b(callcontrol_[a-z0-9_]+)")
# Named on purpose before they exist: the spool (issue 12) adds this gauge.
NOT_YET_EXPORTED = {"callcontrol_spool_depth"}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "callcontrol-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "callcontrol-alerts.yml").read_text())
    return [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]


async def exported_sample_names(db_url: str, tmp_path: Path) -> set[str]:
    fake = FakeAri()
    app_body = {"name": "callcontrol", "channel_ids": [], "bridge_ids": [], "endpoint_ids": [],
                "device_names": []}  # fmt: skip
    fake.respond("GET", "/ari/applications/callcontrol", body=app_body)
    fake.respond("PUT", "/ari/applications/callcontrol/eventFilter", body=app_body)
    async with fake.running() as base_url:
        settings = Settings(
            database=DatabaseSettings(url=db_url),
            ari=AriSettings(url=base_url, username=fake.username, password=fake.password),
            ami=AmiSettings(enabled=False),
            media=MediaSettings(root=tmp_path / "media"),
            provisioning=ProvisioningSettings(file_path=tmp_path / "pjsip_callcontrol.conf"),
        )
        client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
        await client.start_server()
        try:
            await until(lambda: fake.open_sockets > 0)
            text = await (await client.get("/metrics")).text()
        finally:
            await client.close()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_the_dashboard_and_the_alerts_name_only_exported_metrics(
    fresh_db_url: str, tmp_path: Path
) -> None:
    exported = asyncio.run(exported_sample_names(fresh_db_url, tmp_path))
    named = {m for e in dashboard_exprs() + alert_exprs() for m in METRIC.findall(e)}
    assert named, "no metric found in deploy/"
    assert named - exported - NOT_YET_EXPORTED == set()


def test_the_dashboard_shows_what_an_operator_watches() -> None:
    exprs = "\n".join(dashboard_exprs())
    for metric in ("callcontrol_calls_total", "callcontrol_call_decision_seconds_bucket",
                   "callcontrol_ari_connected", "callcontrol_ari_lease_held",
                   "callcontrol_calls_adopted_total", "callcontrol_calls_shed_total"):  # fmt: skip
        assert metric in exprs
