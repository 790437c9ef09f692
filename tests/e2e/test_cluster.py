"""The cluster, for real: a Kamailio edge, two Asterisk nodes, an engine per
node, one PostgreSQL, SIPp (PostgreSQL only: engines share the database).

Addresses (loopback, this file's own): the edge 127.0.3.1:5060; node1
127.0.3.11, node2 127.0.3.12 (SIP 5060, ARI 8088); the carrier's callers
127.0.3.21; the far end 127.0.3.31:5080. Every call goes caller -> edge ->
node -> engine -> far end; which node took it shows in the far end's INVITE
(its top Via is the node's address). A customer's SIP phone 127.0.3.41:5090
registers through the edge; calls to it go node -> edge -> phone (the node's
Via is then the second one). The nodes read SIP accounts and contacts from the
cluster's PostgreSQL (realtime). The module holds the machine-wide Asterisk
lock while the cluster runs. The edge's admission limit (``max_call_rate``) is
0 (none) but in the test that sets it at run time and back.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from support.asterisk import default_config, exclusive_asterisk, realtime_url_for
from support.data import Seeder, next_did
from support.engine import EngineProcess
from support.fault_calls import caller_scenario, far_end_scenario
from support.faults import SippRole, cdr_callers, leftovers, percentile, wait_bound
from support.sipp import Sipp, SippResult
from support.smtp import SmtpSink

from callcontrol.db.engine import create_engine, session_factory
from callcontrol.domain.vocabulary import DestinationType
from callcontrol.sandbox import cluster as cluster_sandbox
from callcontrol.sandbox import cluster_edge, control, process
from callcontrol.sandbox.config import SandboxConfig
from callcontrol.sandbox.layout import MEDIA_MOUNT_POINT
from callcontrol.settings import DatabaseSettings
from provisioning.kamailio_config import (
    ADMITTED_COUNTER,
    SHED_COUNTER,
    ClusterSettings,
    call_rate_rpcs,
)
from provisioning.service import open_provisioning
from provisioning.settings import ProvisioningSettings

pytestmark = [pytest.mark.e2e, pytest.mark.postgresql_only]

CARRIER = "127.0.3.21"
FAR = "127.0.3.31"
CALLER_NUMBER = "4915112345678"
PHONE, PHONE_PORT = "127.0.3.41", 5090
#: The goal of the issue: a node that stops answering is out within this.
PROBING_GOAL_S = 5.0


@dataclass
class Cluster:
    layout: cluster_sandbox.ClusterLayout
    settings: ClusterSettings
    base: SandboxConfig
    engines: dict[str, EngineProcess]
    engine_env: dict[str, dict[str, str]]
    logs: Path
    log_offsets: dict[str, int] = field(default_factory=dict)

    @property
    def edge(self) -> str:
        return f"{self.settings.edge_address}:{self.settings.edge_port}"

    def node_of_address(self) -> dict[str, str]:
        return {node.address: node.name for node in self.settings.nodes}

    def dispatcher_flags(self) -> dict[str, str]:
        """Node name -> the dispatcher's flags (``AP`` active, ``IP`` inactive ...)."""
        uris = {node.name: node.sip_uri for node in self.settings.nodes}
        return cluster_edge.dispatcher_flags(self.layout.edge_dir, uris)

    def start_engine(self, name: str) -> EngineProcess:
        log = self.logs / f"engine-{name}.log"
        self.log_offsets[name] = log.stat().st_size if log.exists() else 0
        engine = EngineProcess(env=self.engine_env[name], log_path=log)
        engine.start()
        self.engines[name] = engine
        return engine

    def channels(self, name: str) -> str:
        return process.cli(self.layout.node(name), "core show channels concise")


def engine_env(
    db_url: str, smtp: SmtpSink, base: SandboxConfig, node_name: str, settings: ClusterSettings,
    layout: cluster_sandbox.ClusterLayout, logs: Path,
) -> dict[str, str]:  # fmt: skip
    config = cluster_sandbox.node_config(base, settings, settings.node(node_name))
    return {
        "CALLCONTROL_ENVIRONMENT": "test",
        "CALLCONTROL_DATABASE__URL": db_url,
        "CALLCONTROL_ARI__URL": f"http://{config.http_host}:{config.http_port}",
        "CALLCONTROL_ARI__USERNAME": config.ari_username,
        "CALLCONTROL_ARI__PASSWORD": config.ari_password,
        "CALLCONTROL_ARI__APP": config.ari_app,
        "CALLCONTROL_MEDIA__ROOT": str(layout.media),
        "CALLCONTROL_MEDIA__ASTERISK_ROOT": MEDIA_MOUNT_POINT,
        "CALLCONTROL_SMTP__PORT": str(smtp.port),
        "CALLCONTROL_LOG_FORMAT": "json",
        "CALLCONTROL_FORWARDING__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "CALLCONTROL_ARI__RECONNECT_MAX_BACKOFF_S": "1",
        "CALLCONTROL_SPOOL__PATH": str(logs / f"spool-{node_name}.db"),
    }


@pytest.fixture(scope="module")
def cluster_db_url(test_databases: Any) -> Iterator[str]:  # tests/conftest.py DatabaseProvider
    """The cluster's own database: no other engine of the run (the session's)
    may take the cluster's jobs lock or see these calls."""
    url = test_databases.new(migrated=True)
    yield url
    test_databases.drop(url)


@pytest.fixture
def data(cluster_db_url: str) -> Seeder:
    return Seeder(cluster_db_url)


@pytest.fixture(scope="module")
def cluster(
    cluster_db_url: str, smtp: SmtpSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    settings = ClusterSettings()
    # SIP accounts and registered contacts: realtime rows of the cluster's database.
    base = default_config(realtime_url=realtime_url_for(cluster_db_url))
    layout = cluster_sandbox.ClusterLayout.default()
    logs = tmp_path_factory.mktemp("cluster")
    asked = time.monotonic()
    with exclusive_asterisk():
        locked = time.monotonic()
        cluster_sandbox.up(layout, settings, base)
        print(
            f"cluster: lock after {locked - asked:.1f} s, up in {time.monotonic() - locked:.1f} s"
        )
        envs = {
            node.name: engine_env(cluster_db_url, smtp, base, node.name, settings, layout, logs)
            for node in settings.nodes
        }
        handle = Cluster(layout, settings, base, {}, envs, logs)
        try:
            for node in settings.nodes:
                handle.start_engine(node.name)
            yield handle
        finally:
            for engine in handle.engines.values():
                engine.stop()
            cluster_sandbox.down(layout, settings)
            left = cluster_sandbox.leftovers(layout, settings)
            assert not left, f"left behind by cluster down: {left}"


@pytest.fixture(autouse=True)
def no_channel_left_on_the_nodes(cluster: Cluster) -> Iterator[None]:
    yield
    deadline = time.monotonic() + 8
    listing = {}
    while time.monotonic() < deadline:
        listing = {
            node.name: cluster.channels(node.name)
            for node in cluster.settings.nodes
            if process.asterisk_pids(cluster.layout.node(node.name))
        }
        if not any(text.strip() for text in listing.values()):
            return
        time.sleep(0.2)
    pytest.fail(f"channels left on the nodes after the test: {listing}")


def callers(
    cluster: Cluster, workdir: Path, did: str, *, calls: int, rate: float, talk_ms: int = 500
) -> Sipp:
    return Sipp(
        "cluster_caller.xml", CARRIER, 5070, workdir, remote=cluster.edge, service=did,
        keys={"caller": CALLER_NUMBER}, calls=calls, rate=rate, duration_ms=talk_ms,
        timeout_s=60,
    ).start()  # fmt: skip


def far_end(workdir: Path, calls: int) -> Sipp:
    return (
        Sipp(
            "far_answer.xml",
            FAR,
            5080,
            workdir,
            calls=calls,
            variables={"answer_ms": "100"},
            timeout_s=90,
        )
        .start()
        .wait_ready()
    )


def nodes_that_took(cluster: Cluster, far: SippResult) -> Counter[str]:
    names = cluster.node_of_address()
    taken: Counter[str] = Counter()
    for invite in far.received("INVITE"):
        if "tag=" in (invite.header("To") or ""):
            continue  # a re-INVITE of a call already counted
        via = invite.header("Via") or ""
        address = via.split()[1].split(":")[0] if len(via.split()) > 1 else "?"
        taken[names.get(address, address)] += 1
    return taken


def forwarded_number(data: Seeder) -> str:
    account = data.account(balance_minor=100_000)
    return data.number(account, destinations=[(DestinationType.SIP_URI, f"sip:bob@{FAR}:5080", 20)])


def wait_for_cdrs(
    data: Seeder, did: str, count: int, timeout_s: float = 20
) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    rows = data.cdrs_for(did)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.3)
        rows = data.cdrs_for(did)
    return rows


def jobs_holders(cluster: Cluster) -> list[str]:
    """Live engines whose log (since their start) says they hold the cluster's jobs lock."""
    holders = []
    for name, engine in cluster.engines.items():
        if engine.proc is None or engine.proc.poll() is not None:
            continue
        held = False
        with (cluster.logs / f"engine-{name}.log").open("rb") as log:
            log.seek(cluster.log_offsets.get(name, 0))
            lines = log.read().decode(errors="replace").splitlines()
        for line in lines:
            try:
                event = json.loads(line).get("event")
            except ValueError:
                continue
            if event == "cluster_jobs_acquired":
                held = True
            elif event == "cluster_jobs_released":
                held = False
        if held:
            holders.append(name)
    return holders


def wait_jobs_holders(cluster: Cluster, timeout_s: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while not (holders := jobs_holders(cluster)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return holders


def test_calls_through_the_edge_are_spread_over_both_nodes_with_one_cdr_each(
    cluster: Cluster, data: Seeder, workdir: Path
) -> None:
    did = forwarded_number(data)
    far = far_end(workdir, calls=10)
    caller = callers(cluster, workdir, did, calls=10, rate=5).wait()
    far_result = far.stop()
    assert caller.ok and caller.successful == 10, caller.describe()
    taken = nodes_that_took(cluster, far_result)
    assert taken == Counter({"node1": 5, "node2": 5}), taken
    rows = wait_for_cdrs(data, did, 10)
    assert len(rows) == 10 and all(row["disposition"] == "answered" for row in rows)
    # The billing run, reminders and the purge: in exactly one of the two engines.
    assert len(wait_jobs_holders(cluster)) == 1


def test_the_engines_rejections_go_back_to_the_caller_once_and_are_not_retried(
    cluster: Cluster, data: Seeder, workdir: Path
) -> None:
    """404 (unknown number) and 480 (a number with nowhere to ring) are the engine's
    decisions: final at the edge, one node, one CDR (a retry would write two)."""
    unknown = next_did("+4930999")
    nowhere = data.number(data.account())
    for did, code in ((unknown, 404), (nowhere, 480)):
        result = Sipp(
            "caller_expect_code.xml", CARRIER, 5070, workdir, remote=cluster.edge, service=did,
            keys={"caller": CALLER_NUMBER}, variables={"expected": str(code)}, timeout_s=20,
        ).run()  # fmt: skip
        assert result.ok, result.describe()
        call_id = result.messages[0].header("Call-ID")
        assert call_id
        edge_log = cluster_edge.log_tail(cluster.layout.edge_dir, 100_000)
        routed = [line for line in edge_log.splitlines() if f"edge: {call_id} -> " in line]
        assert len(routed) == 1, routed
        rows = wait_for_cdrs(data, did, 1)
        assert [row["sip_code"] for row in rows] == [code]


def test_a_call_whose_destinations_all_failed_gets_503_once_not_a_retry_on_the_other_node(
    cluster: Cluster, data: Seeder, workdir: Path
) -> None:
    """The engine routed the call and its one destination answered 503: the caller
    gets 503 with ``Reason: Q.850;cause=42`` (``CAUSE_DESTINATIONS_FAILED``), which
    the edge passes back instead of trying the other node (34 would be retried):
    one node, one CDR, the destination rung once."""
    account = data.account(balance_minor=100_000)
    did = data.number(account, destinations=[(DestinationType.SIP_URI, f"sip:bob@{FAR}:5084", 10)])
    far = Sipp("far_unavailable.xml", FAR, 5084, workdir, calls=2, timeout_s=30)
    far.start().wait_ready()
    try:
        result = Sipp(
            "caller_expect_code.xml", CARRIER, 5070, workdir, remote=cluster.edge, service=did,
            keys={"caller": CALLER_NUMBER}, variables={"expected": "503"}, timeout_s=20,
        ).run()  # fmt: skip
        assert result.ok, result.describe()
        reasons = [m.header("Reason") or "" for m in result.received(503)]
        assert reasons and all("cause=42" in r for r in reasons), reasons
        call_id = result.messages[0].header("Call-ID")
        assert call_id
        edge_log = cluster_edge.log_tail(cluster.layout.edge_dir, 100_000)
        routed = [line for line in edge_log.splitlines() if f"edge: {call_id} -> " in line]
        assert len(routed) == 1, routed
        rows = wait_for_cdrs(data, did, 1)
        time.sleep(1.0)  # a retry on the other node would write a second one now
        rows = wait_for_cdrs(data, did, 1)
        assert len(rows) == 1 and rows[0]["sip_code"] == 503, rows
    finally:
        far_result = far.stop()
    assert len(far_result.received("INVITE")) == 1, "the destination was rung once"


def test_an_engine_killed_under_load_its_node_answers_503_and_the_edge_retries_the_other(
    cluster: Cluster, data: Seeder, workdir: Path
) -> None:
    did = forwarded_number(data)
    (holder,) = wait_jobs_holders(cluster)
    calls = 20
    far = far_end(workdir, calls=calls)
    caller = callers(cluster, workdir, did, calls=calls, rate=4)
    time.sleep(1.2)
    cluster.engines[holder].kill()
    result = caller.wait(90)
    far_result = far.stop()
    assert result.successful == calls and result.failed == 0, result.describe()
    (survivor,) = set(cluster.engines) - {holder}
    taken = nodes_that_took(cluster, far_result)
    assert taken[survivor] >= calls - 6, taken
    edge_log = cluster_edge.log_tail(cluster.layout.edge_dir, 100_000)
    assert "answered 503" in edge_log, "the dead engine's node answered 503 and was retried"
    # The jobs went to the surviving engine (the killed one's session died with it).
    assert wait_jobs_holders(cluster) == [survivor]
    rows = wait_for_cdrs(data, did, taken[survivor])
    assert len(rows) >= taken[survivor]
    print(f"engine kill: {calls} calls, {taken}; CDRs {len(rows)} (node {holder}'s calls in "
          "flight at the kill are written when its engine returns)")  # fmt: skip
    cluster.start_engine(holder)
    rows = wait_for_cdrs(data, did, calls, timeout_s=20)
    print(f"after {holder}'s engine restarted: {len(rows)} CDRs for {calls} calls")
    assert len(rows) == calls, "no CDR lost: the restarted engine wrote its calls' CDRs"


def test_a_stopped_asterisk_node_is_out_within_the_probing_interval_and_calls_go_on(
    cluster: Cluster, data: Seeder, workdir: Path
) -> None:
    did = forwarded_number(data)
    assert set(cluster.dispatcher_flags().values()) == {"AP"}, cluster.dispatcher_flags()
    calls = 10
    far = far_end(workdir, calls=calls)
    stopped = "node1"
    node_layout = cluster.layout.node(stopped)
    (pid,) = process.asterisk_pids(node_layout)
    process.stop(node_layout, pid)
    try:
        started = time.monotonic()
        caller = callers(cluster, workdir, did, calls=calls, rate=5)
        while cluster.dispatcher_flags().get(stopped, "")[:1] != "I":
            assert time.monotonic() - started < PROBING_GOAL_S + 5, cluster.dispatcher_flags()
            time.sleep(0.05)
        out_after = time.monotonic() - started
        result = caller.wait(60)
        far_result = far.stop()
        assert result.successful == calls and result.failed == 0, result.describe()
        assert nodes_that_took(cluster, far_result) == Counter({"node2": calls})
        assert out_after <= PROBING_GOAL_S, f"node out after {out_after:.1f} s"
        print(f"asterisk stop: node out of the dispatcher after {out_after:.2f} s; "
              f"{calls} calls answered by node2")  # fmt: skip
    finally:
        # Back in (also when the test failed, so the next tests have two nodes):
        # the node's Asterisk restarted, the probe brings it back.
        control.up(
            node_layout,
            cluster_sandbox.node_config(
                cluster.base, cluster.settings, cluster.settings.node(stopped)
            ),
            cluster.layout.media,
        )
    deadline = time.monotonic() + 10
    while cluster.dispatcher_flags().get(stopped) != "AP":
        assert time.monotonic() < deadline, cluster.dispatcher_flags()
        time.sleep(0.1)
    # ... and its engine reconnected (until then the node answers 503 at once and
    # the edge sends the call to the other node: no call lost, but the next
    # tests count calls per node).
    while not cluster.engines[stopped].health().get("ari_connected"):
        assert time.monotonic() < deadline, cluster.engines[stopped].health()
        time.sleep(0.1)


def new_sip_account(db_url: str, account_id: int, login: str) -> str:
    """Provision a SIP account as the cluster needs it (realtime, Path kept); its password."""

    async def create() -> str:
        settings = ProvisioningSettings(
            backend="realtime", realtime_url=SecretStr(db_url), support_path=True
        )
        engine = create_engine(DatabaseSettings(url=db_url), pooled=False)
        try:
            async with open_provisioning(settings, session_factory(engine), reloader=None) as svc:
                _, password = await svc.create_sip_account(account_id, login)
                return password
        finally:
            await engine.dispose()

    return asyncio.run(create())


def nodes_that_rang(cluster: Cluster, phone: SippResult) -> Counter[str]:
    """Node name -> new calls the phone got from it (through the edge: the node's Via is below)."""
    names = cluster.node_of_address()
    taken: Counter[str] = Counter()
    for invite in phone.received("INVITE"):
        if "tag=" in (invite.header("To") or ""):
            continue
        head = invite.text.split("\n\n", 1)[0]
        hosts = re.findall(r"(?im)^(?:via|v):\s*SIP/2\.0/UDP\s+([0-9.]+)", head)
        edge = {cluster.settings.edge_address, cluster.settings.phone_source_address}
        assert hosts and hosts[0] in edge, hosts  # the node's INVITE came through the edge
        nodes = [names[host] for host in hosts if host in names]
        taken[nodes[0] if nodes else "?"] += 1
    return taken


def test_a_phone_registered_through_the_edge_is_rung_by_whichever_node_takes_the_call(
    cluster: Cluster, data: Seeder, cluster_db_url: str, workdir: Path
) -> None:
    account = data.account(balance_minor=100_000)
    login = f"edgephone{account}"
    password = new_sip_account(cluster_db_url, account, login)
    registered = Sipp(
        "phone_register.xml", PHONE, PHONE_PORT, workdir, remote=cluster.edge, service=login,
        extra_args=("-au", login, "-ap", password), timeout_s=10,
    ).run()  # fmt: skip
    assert registered.ok, registered.describe()
    # Both nodes see the contact (shared ps_contacts), with the edge's Path.
    for node in cluster.settings.nodes:
        shown = process.cli(cluster.layout.node(node.name), f"pjsip show aor {login}")
        assert f"sip:{login}@{PHONE}:{PHONE_PORT}" in shown, (node.name, shown)
    did = data.number(account, destinations=[(DestinationType.SIP_ACCOUNT, login, 20)])
    calls = 6
    phone = Sipp(
        "far_answer.xml", PHONE, PHONE_PORT, workdir, calls=calls,
        variables={"answer_ms": "100"}, timeout_s=60,
    ).start().wait_ready()  # fmt: skip
    caller = callers(cluster, workdir, did, calls=calls, rate=3).wait()
    rang = phone.stop()
    assert caller.ok and caller.successful == calls, caller.describe()
    assert nodes_that_rang(cluster, rang) == Counter({"node1": 3, "node2": 3})
    rows = wait_for_cdrs(data, did, calls)
    assert len(rows) == calls, rows
    assert all(row["disposition"] == "answered" for row in rows), rows
    assert {row["answered_destination"] for row in rows} == {f"1:sip_account:{login}"}


def test_a_phone_behind_the_edge_calls_out_through_a_node(
    cluster: Cluster, data: Seeder, cluster_db_url: str, workdir: Path
) -> None:
    """The phone's INVITE reaches a node from the edge's phone address, so the
    node identifies the account by user name (not as the carrier) and challenges it."""
    account = data.account(balance_minor=1000)
    did = data.number(account, did=next_did("+4930777"), callerid_service=True)
    data.present(account, did)  # a Berlin number: the national number below is German
    login = f"edgeout{account}"
    password = new_sip_account(cluster_db_url, account, login)
    data.rate("49", 6)
    carrier = Sipp(
        "far_answer.xml", "127.0.0.5", 5060, workdir, variables={"answer_ms": "100"},
        timeout_s=30,
    ).start().wait_ready()  # fmt: skip
    caller = Sipp(
        "phone_call_via_edge.xml", PHONE, PHONE_PORT + 1, workdir, remote=cluster.edge,
        service="0306660123", keys={"login": login}, duration_ms=500,
        extra_args=("-au", login, "-ap", password), timeout_s=20,
    ).run()  # fmt: skip
    if not caller.ok:
        carrier.stop()
    assert caller.ok, caller.describe()
    pstn = carrier.wait(15)
    assert pstn.ok, pstn.describe()
    invite = pstn.received("INVITE")[0]
    assert invite.first_line.startswith("INVITE sip:+49306660123@"), invite.first_line
    cdr = data.wait_for_cdr("+49306660123")
    assert cdr["direction"] == "outbound" and cdr["disposition"] == "answered"
    assert cdr["caller"] == login and cdr["account_id"] == account


def set_edge_call_rate(cluster: Cluster, limit: int) -> None:
    """What ``callcontrol cluster call-rate N`` does: kamcmd, no restart."""
    for command in call_rate_rpcs(limit):
        cluster_edge.rpc(cluster.layout.edge_dir, " ".join(command))


def asterisk_leftovers(cluster: Cluster) -> dict[str, tuple[str, ...]]:
    """Channels and bridges still in each node's Asterisk (empty when clean)."""
    found: dict[str, tuple[str, ...]] = {}
    base = cluster.base
    for node in cluster.settings.nodes:
        app = cluster.engine_env[node.name]["CALLCONTROL_ARI__APP"]
        left = leftovers(f"{node.ari_url}/ari", base.ari_username, base.ari_password, app)
        if not left.clean:
            found[node.name] = left.channels + left.bridges
    return found


def test_a_burst_above_the_edges_call_rate_gets_503_from_the_edge_at_once_and_leaves_nothing(
    cluster: Cluster, data: Seeder, workdir: Path
) -> None:
    """The limit is set at run time (5 calls/s for the whole edge); a burst of 40
    calls in one second: the edge admits 5 of them (one in every other tenth of
    the second) and answers the rest 503 (``Reason: Q.850;cause=34``) itself
    before any node sees them; every caller gets a final answer, the admitted
    calls are answered and leave one CDR each, the shed ones none, and neither
    Asterisk keeps a channel or a bridge. The edge's counters agree with what the callers got."""
    limit, calls, prefix = 5, 40, "4915300"
    far = SippRole(
        "shed-far", workdir / "shed-far", far_end_scenario(hold_min_ms=300, hold_max_ms=300),
        ["-i", FAR, "-p", "5086", "-recv_timeout", "30000"],
    ).start()  # fmt: skip
    did = data.number(
        data.account(balance_minor=100_000),
        destinations=[(DestinationType.SIP_URI, f"sip:bob@{FAR}:5086", 20)],
    )
    before = cluster_edge.edge_counters(cluster.layout.edge_dir)
    set_edge_call_rate(cluster, limit)
    try:
        wait_bound(far, FAR, 5086)
        burst = SippRole(
            "shed-burst", workdir / "shed-burst",
            caller_scenario(caller_prefix=prefix, wait_bye_s=10, proxied=True),
            ["-i", CARRIER, "-p", "5071", "-s", did, "-r", str(calls), "-m", str(calls),
             "-l", str(calls), "-recv_timeout", "20000", "-timeout", "40s", cluster.edge],
        ).start()  # fmt: skip
        assert burst.wait(60) is not None, "the burst did not end"
    finally:
        set_edge_call_rate(cluster, 0)
        far.stop()
    after = cluster_edge.edge_counters(cluster.layout.edge_dir)
    records = burst.calls()
    outcomes = Counter(record.outcome for record in records.values())
    assert len(records) == calls and set(outcomes) <= {"answered", "503"}, outcomes
    shed = [r for r in records.values() if r.outcome == "503"]
    answered = [r for r in records.values() if r.outcome == "answered"]
    # 40 calls at 40/s: every tenth of a second once; the limit is 1 call in
    # every other tenth (a tenth cut by the pipes' 1 s reset may admit 2).
    assert limit - 1 <= len(answered) <= 2 * limit, outcomes
    assert after[SHED_COUNTER] - before.get(SHED_COUNTER, 0) == len(shed)
    assert after[ADMITTED_COUNTER] - before.get(ADMITTED_COUNTER, 0) == len(answered)
    assert all(r.failed_cause == "34" for r in shed), [r.failed_cause for r in shed]
    assert all(r.end == "BYE" for r in answered), [r.end for r in answered]
    shed_ms = [(r.failed_at or 0) - (r.placed_at or 0) for r in shed]
    p99 = percentile([s * 1000 for s in shed_ms], 99)
    print(f"edge shedding: {len(answered)} admitted, {len(shed)} shed, p99 503 {p99:.1f} ms")
    # The goal is 100 ms; the edge answers in well under 1 ms, the margin is
    # for a shared 2-core machine (SIPp, two Asterisks, PostgreSQL on it).
    assert p99 is not None and p99 <= 250, f"p99 time to 503 {p99:.0f} ms"
    cdrs = cdr_callers(data.url, did)
    admitted_callers = {prefix + r.call_id.split("-", 1)[0] for r in answered}
    deadline = time.monotonic() + 10
    while set(cdrs) != admitted_callers and time.monotonic() < deadline:
        time.sleep(0.3)
        cdrs = cdr_callers(data.url, did)
    assert set(cdrs) == admitted_callers and set(cdrs.values()) == {1}, cdrs
    deadline = time.monotonic() + 5
    while (left := asterisk_leftovers(cluster)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"left in Asterisk: {left}"
