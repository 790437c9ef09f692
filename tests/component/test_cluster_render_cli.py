"""``callcontrol cluster render`` as a person runs it: the edge's files and each
node's Asterisk files from settings, and a Kamailio config that the real
Kamailio 5.6 accepts (``kamailio -c``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def render(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")}
    return subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "cluster", "render", "--out", str(out)],
        env=clean | {"CALLCONTROL_ARI__APP": "cc-test"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_render_writes_the_edge_and_every_node_from_settings(tmp_path: Path) -> None:
    nodes = [{"name": "a", "address": "10.1.0.11"}, {"name": "b", "address": "10.1.0.12"}]
    env = {
        "CALLCONTROL_CLUSTER__EDGE_ADDRESS": "10.1.0.2",
        "CALLCONTROL_CLUSTER__NODES": json.dumps(nodes),
        "CALLCONTROL_CLUSTER__CARRIER_MATCH": '["198.51.100.0/24"]',
        "CALLCONTROL_CLUSTER__CONFIG_DIR": str(tmp_path / "kamailio"),
    }
    result = render(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "kamailio"]
    assert "sip:10.1.0.12:5060 0 0 duid=b" in (tmp_path / "kamailio/dispatcher.list").read_text()
    assert (tmp_path / "a/ari.conf").stat().st_mode & 0o777 == 0o640
    assert "Stasis(cc-test-b,inbound" in (tmp_path / "b/extensions_callcontrol.conf").read_text()
    assert "match = 10.1.0.2\n" in (tmp_path / "a/pjsip.conf").read_text()
    if shutil.which("kamailio") is None:
        pytest.fail("kamailio is not installed (scripts/setup.sh installs it)")
    check = subprocess.run(
        ["kamailio", "-c", "-f", str(tmp_path / "kamailio/kamailio.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr[-2000:]


def test_a_bad_cluster_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = render(tmp_path, {"CALLCONTROL_CLUSTER__CARRIER_MATCH": '["not-an-address"]'})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "CALLCONTROL_CLUSTER__CARRIER_MATCH" in result.stderr
