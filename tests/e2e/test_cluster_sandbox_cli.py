"""``callcontrol cluster up|status|down`` as a person runs them: the edge and
both nodes come up and answer, and ``down`` leaves no process and no mount.

Runs under this process's hold of the machine-wide Asterisk lock, which the
commands honour through ``CALLCONTROL_ASTERISK_LOCK_HELD=1`` (as the demo does).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.asterisk import exclusive_asterisk

from callcontrol.sandbox import cluster as cluster_sandbox
from callcontrol.sandbox import cluster_edge
from callcontrol.sandbox.lock import HELD_ENV
from provisioning.kamailio_config import ClusterSettings

pytestmark = pytest.mark.e2e


def cluster_command(verb: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")}
    env |= {HELD_ENV: "1", "CALLCONTROL_ARI__APP": f"callcontrol-test-{os.getpid()}"}
    return subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "cluster", verb],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cluster_up_brings_the_edge_and_both_nodes_up_and_down_leaves_nothing() -> None:
    settings = ClusterSettings()
    layout = cluster_sandbox.ClusterLayout.default()
    with exclusive_asterisk():
        try:
            up = cluster_command("up")
            assert up.returncode == 0, up.stderr
            assert "edge: kamailio pid" in up.stdout and "node2: asterisk" in up.stdout
            assert cluster_edge.sip_options(settings.edge_address, settings.edge_port) == 200
            for node in settings.nodes:
                # A node takes requests from the edge's address, and challenges others.
                edge = settings.edge_address
                assert cluster_edge.sip_options(node.address, node.sip_port, source=edge) == 200
                assert cluster_edge.sip_options(node.address, node.sip_port) == 401, node.name
            status = cluster_command("status")
            assert status.returncode == 0, status.stderr
            assert "OPTIONS: 200" in status.stdout
            assert status.stdout.count("asterisk running") == 2, status.stdout
        finally:
            down = cluster_command("down")
        assert down.returncode == 0, down.stderr + down.stdout
        assert cluster_sandbox.leftovers(layout, settings) == []
        assert cluster_edge.sip_options(settings.edge_address, settings.edge_port) is None
