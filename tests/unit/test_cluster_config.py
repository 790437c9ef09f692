"""The cluster's configuration rendered from settings: golden files for a
production-like plan (an edge and two nodes on a private network), and the
rules the rendered text must keep.

Regenerate the golden files after a deliberate change with
``CALLCONTROL_UPDATE_GOLDEN=1 pytest tests/unit/test_cluster_config.py`` and
read the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from callcontrol.sandbox.cluster_cli import rendered_cluster
from callcontrol.settings import Settings
from provisioning.asterisk_config import AsteriskConfigError
from provisioning.kamailio_config import (
    ClusterNode,
    ClusterSettings,
    call_rate_rpcs,
    render_kamailio_config,
    slot_limits,
)
from provisioning.settings import AsteriskSettings

GOLDEN = Path(__file__).parents[1] / "data" / "cluster-config"


def production_settings(**cluster: object) -> Settings:
    return Settings(
        ari={"url": "http://10.20.0.5:8088", "password": "ari-pw", "app": "cc-prod"},  # type: ignore[arg-type]
        ami={"enabled": True, "password": "ami-pw"},  # type: ignore[arg-type]
        provisioning={"realm": "voice.example.net"},  # type: ignore[arg-type]
        asterisk=AsteriskSettings(
            pstn_contact="sip:192.0.2.50:5060", ami_permit=("10.20.0.0/255.255.255.0",)
        ),
        cluster=ClusterSettings(
            **{
                "edge_address": "10.20.0.2",
                "phone_source_address": "10.20.0.3",
                "nodes": (
                    ClusterNode(name="node1", address="10.20.0.11"),
                    ClusterNode(name="node2", address="10.20.0.12"),
                ),
                "carrier_match": ("203.0.113.10", "203.0.113.64/26"),
                **cluster,
            }  # type: ignore[arg-type]
        ),
    )


def test_a_production_cluster_renders_exactly_the_golden_files() -> None:
    folders = rendered_cluster(production_settings())
    if os.environ.get("CALLCONTROL_UPDATE_GOLDEN"):
        for folder, files in folders.items():
            (GOLDEN / folder).mkdir(parents=True, exist_ok=True)
            for old in (GOLDEN / folder).iterdir():
                old.unlink()
            for name, text in files.items():
                (GOLDEN / folder / name).write_text(text, encoding="utf-8")
    assert sorted(folders) == sorted(p.name for p in GOLDEN.iterdir())
    for folder, files in folders.items():
        golden = {p.name: p.read_text(encoding="utf-8") for p in (GOLDEN / folder).iterdir()}
        assert sorted(files) == sorted(golden), folder
        for name, text in files.items():
            assert text == golden[name], f"{folder}/{name} differs from the golden file"


def test_every_node_takes_inbound_calls_from_the_edge_only_on_its_own_addresses() -> None:
    folders = rendered_cluster(production_settings())
    for name, address in (("node1", "10.20.0.11"), ("node2", "10.20.0.12")):
        pjsip = folders[name]["pjsip.conf"]
        carrier = pjsip.split("[callcontrol-carrier-identify]")[1].split("\n\n")[0]
        assert re.findall(r"^match = (.+)$", carrier, re.M) == ["10.20.0.2"]
        assert f"bind = {address}:5060" in pjsip
        assert f"media_address = {address}" in pjsip
        assert f"bindaddr = {address}" in folders[name]["http.conf"]
        assert f"bindaddr = {address}" in folders[name]["manager.conf"]
        assert f"Stasis(cc-prod-{name}," in folders[name]["extensions_callcontrol.conf"]
        # Channel ids (the CDRs' keys) carry the node: two nodes never make the same one.
        assert f"[options]\nsystemname = {name}\n" in folders[name]["asterisk.conf"]
    assert "203.0.113" not in folders["node1"]["pjsip.conf"]


def test_the_dispatcher_lists_every_node_and_probes_them_every_second() -> None:
    files = render_kamailio_config(production_settings().cluster)
    assert files["dispatcher.list"].splitlines()[2:] == [
        "1 sip:10.20.0.11:5060 0 0 duid=node1",
        "1 sip:10.20.0.12:5060 0 0 duid=node2",
    ]
    cfg = files["kamailio.cfg"]
    assert 'modparam("dispatcher", "ds_ping_interval", 1)' in cfg
    assert 'modparam("dispatcher", "ds_probing_threshold", 1)' in cfg
    assert 'modparam("dispatcher", "ds_probing_mode", 1)' in cfg
    assert 'modparam("dispatcher", "list_file", "/etc/kamailio/dispatcher.list")' in cfg
    assert "listen=udp:10.20.0.2:5060" in cfg


def test_the_failure_route_retries_node_failures_and_passes_the_engines_decisions_back() -> None:
    cfg = render_kamailio_config(production_settings().cluster)["kamailio.cfg"]
    failure = cfg.split("failure_route[NODE_FAILED]")[1]
    assert 't_check_status("500|501|502|503|504")' in failure
    assert "t_branch_timeout() && !t_branch_replied()" in failure
    assert "ds_next_dst()" in failure
    for final in ("404", "403", "408", "480", "486", "603"):
        assert final not in failure


def test_only_the_carriers_may_start_calls_at_the_edge() -> None:
    cfg = render_kamailio_config(production_settings().cluster)["kamailio.cfg"]
    assert (
        'if (!(is_in_subnet("$si", "203.0.113.10/32") || is_in_subnet("$si", "203.0.113.64/26"))) {'
    ) in cfg


def test_an_edge_on_a_nodes_address_and_duplicate_nodes_are_refused() -> None:
    with pytest.raises(AsteriskConfigError):
        render_kamailio_config(production_settings(edge_address="10.20.0.11").cluster)
    with pytest.raises(ValidationError):
        ClusterSettings(nodes=(ClusterNode(name="a", address="10.0.0.1"),) * 2)
    with pytest.raises(ValidationError):
        ClusterSettings(carrier_match=("not-an-address",))


def test_phones_reach_the_nodes_from_the_second_address_with_a_path_and_one_node_per_call_id() -> (
    None
):
    cfg = render_kamailio_config(production_settings().cluster)["kamailio.cfg"]
    assert "listen=udp:10.20.0.2:5060\n" in cfg and "listen=udp:10.20.0.3:5060\n" in cfg
    phone = cfg.split("route[FROM_PHONE] {", 1)[1].split("\n}\n", 1)[0]
    assert "add_path_received()" in phone
    assert 'ds_select_dst("1", "0")' in phone, "a phone's REGISTERs: hash over Call-ID"
    assert "force_send_socket(udp:10.20.0.3:5060);" in phone
    carrier = cfg.split("request_route {", 1)[1].split("\n}\n", 1)[0]
    assert "force_send_socket(udp:10.20.0.2:5060);" in carrier
    node = cfg.split("route[FROM_NODE] {", 1)[1].split("\n}\n", 1)[0]
    assert '$(var(path){uri.host}) != "10.20.0.3"' in node and 'sl_send_reply("403"' in node
    assert "$du = $var(phone);" in node
    assert 'modparam("path", "use_received", 1)' in cfg


def test_the_phones_address_must_be_the_edges_own() -> None:
    with pytest.raises(ValidationError):
        ClusterSettings(phone_source_address="127.0.3.11")
    with pytest.raises(ValidationError):
        ClusterSettings(phone_source_address="127.0.3.1")


def test_a_node_whose_engine_is_gone_answers_503_at_once_for_the_edge_to_retry() -> None:
    """A single Asterisk waits for a restarting engine (calls.engine_retries, a
    second each); a cluster node does not: the edge's next node is quicker."""
    folders = rendered_cluster(production_settings())
    for name in ("node1", "node2"):
        dialplan = folders[name]["extensions_callcontrol.conf"]
        assert dialplan.count("GotoIf($[0${CC_TRIED} >= 0]?gone)") == 2, name
    waited = rendered_cluster(production_settings(node_engine_retries=2))
    assert waited["node1"]["extensions_callcontrol.conf"].count(">= 2]?gone)") == 2


def test_new_calls_beyond_the_edges_call_rate_get_503_from_the_edge_before_any_node() -> None:
    cfg = render_kamailio_config(production_settings(max_call_rate=120).cluster)["kamailio.cfg"]
    for slot in range(10):  # a tenth of the limit per tenth of a second
        assert f'modparam("ratelimit", "pipe", "{slot}:TAILDROP:12")' in cfg
    assert 'modparam("ratelimit", "timer_interval", 1)' in cfg
    assert 'modparam("pv", "shvset", "max_call_rate=i:120")' in cfg
    admit = cfg.split("route[ADMIT] {")[1].split("\n}\n")[0]
    assert 'append_to_reply("Retry-After: 1\\r\\nReason: Q.850;cause=34\\r\\n");' in admit
    assert 'sl_send_reply("503", "Service Unavailable");' in admit
    assert "t_relay" not in admit and "ds_select_dst" not in admit
    request = cfg.split("request_route {")[1].split("\n}\n")[0]
    # Only new INVITEs are counted: after in-dialog requests, CANCEL, ACK,
    # retransmissions (t_check_trans), OPTIONS and the nodes' own INVITEs; before
    # any dispatching.
    admitted_at = request.index("route(ADMIT)")
    for earlier in ("has_totag()", 'is_method("CANCEL")', 'is_method("ACK")', "t_check_trans();",
                    'is_method("OPTIONS")', "route(FROM_NODE)"):  # fmt: skip
        assert request.index(earlier) < admitted_at, earlier
    assert request[admitted_at - 40 : admitted_at].strip().endswith('if (is_method("INVITE")) {')
    assert admitted_at < request.index("route(FROM_PHONE)") < request.index("ds_select_dst")


def test_the_edge_admits_every_call_by_default_and_without_retry_after_if_asked() -> None:
    cfg = render_kamailio_config(production_settings(shed_retry_after_s=0).cluster)["kamailio.cfg"]
    assert 'modparam("pv", "shvset", "max_call_rate=i:0")' in cfg
    assert "$var(slot) = $TV(u) / 100000;" in cfg
    assert 'if ($shv(max_call_rate) > 0 && !rl_check("$var(slot)")) {' in cfg
    assert 'append_to_reply("Reason: Q.850;cause=34\\r\\n");' in cfg


def test_each_tenth_of_a_second_admits_a_tenth_of_the_limit_spread_evenly() -> None:
    assert slot_limits(150) == [15] * 10
    assert slot_limits(5) == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    assert slot_limits(7) == [0, 1, 1, 0, 1, 1, 0, 1, 1, 1]
    for limit in (1, 9, 10, 11, 99, 1234):
        assert (
            sum(slot_limits(limit)) == limit
            and max(slot_limits(limit)) - min(slot_limits(limit)) <= 1
        )


def test_the_call_rate_changes_at_run_time_in_an_order_that_never_sheds_more() -> None:
    assert call_rate_rpcs(150) == [
        *(["rl.set_pipe", str(slot), "TAILDROP", "15"] for slot in range(10)),
        ["pv.shvSet", "max_call_rate", "int", "150"],
    ]
    # Off: the switch first, so the pipes' placeholder limit (1) never applies.
    assert call_rate_rpcs(0) == [
        ["pv.shvSet", "max_call_rate", "int", "0"],
        *(["rl.set_pipe", str(slot), "TAILDROP", "1"] for slot in range(10)),
    ]
    with pytest.raises(ValueError):
        call_rate_rpcs(-1)
    with pytest.raises(ValidationError):
        ClusterSettings(max_call_rate=-5)
