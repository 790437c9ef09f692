"""The cluster's configuration: a Kamailio edge in front of N Asterisk nodes.

Rules this module keeps:
- Pure: :func:`render_kamailio_config` turns a :class:`ClusterSettings` into
  ``{file name: text}`` for Kamailio (``kamailio.cfg``, ``dispatcher.list``);
  :func:`node_asterisk_plan` turns the engine's :class:`AsteriskPlan` into the
  plan of one node, which ``render_asterisk_config`` renders like any other.
  Nothing here reads or writes a file. ``callcontrol cluster render`` writes the
  result; the cluster sandbox installs the same text.
- The edge is a stateful proxy that stays in the dialog (``record_route``), so
  in-dialog requests of the caller reach the node that took the call. Each
  node's carrier endpoint matches exactly the edge's address: a node takes
  inbound calls from the edge only.
- Failover: the dispatcher probes every node with OPTIONS every
  ``ping_interval_s``; ``probing_threshold`` failed probes take a node out, and
  a call the node does not answer at all (not even 100 Trying) within
  ``node_timeout_ms`` marks it out at once. Such a timeout and a node's
  500-504 are retried on the next node (``ds_next_dst``): 503 is what a node
  answers when its engine is gone (the dialplan's ``Hangup(34)``) or saturated.
  Every other reply is final and goes back to the caller: 404, 403, 486, 603,
  and also a 408 or 480 *sent by a node*, because on this engine those are the
  engine's decisions (no answer, no destination - causes 18/19), and retrying
  them would ring the customer a second time and write a second CDR. For
  the same reason a 503 with ``Reason: Q.850;cause=42`` is final: the engine
  routed the call and every destination failed
  (``contract.CAUSE_DESTINATIONS_FAILED``); only 34 means "try another node".
- Customers' SIP phones register through the edge (docs/cluster.md, "SIP
  phones"): any source that is neither a carrier nor a node is a phone. Its
  REGISTER and INVITE go to a node from the edge's second address
  ``phone_source_address`` (the nodes identify the carrier by the edge's main
  address, so a phone's request, from the other one, is identified by its user
  name and authenticated by the node). Both REGISTERs of a digest exchange go
  to the same node (dispatcher hash over Call-ID: a node's nonce is its own).
  A REGISTER gets a Path header (``add_path_received``); the nodes keep
  contacts in the shared PostgreSQL (``ps_contacts``) with ``support_path``, so
  any node calls a phone back through the edge, which sends the INVITE to the
  address the phone registered from (the Path's ``received``).
- Admission at the edge: a new INVITE (from a carrier or a phone) beyond
  ``max_call_rate`` calls/s for the whole edge gets ``503`` with
  ``Retry-After`` and ``Reason: Q.850;cause=34`` from the edge itself,
  statelessly, before dispatching: no node spends an INVITE, a channel or a
  dialplan on it (shedding inside Asterisk could not answer within 100 ms
  once Asterisk's SIP ingress itself was saturated: docs/faults.md).
  In-dialog requests, ACK, CANCEL, BYE, REGISTER, OPTIONS and a node's INVITE
  to a phone (an admitted call's leg) are never counted. The count is
  Kamailio's ``ratelimit``, one TAILDROP pipe per tenth of a second
  (``RATE_SLOTS``; a pipe counts per 1 s window, the shortest its timer
  knows): a call is checked against the pipe of the tenth it arrives in, each
  pipe holds a tenth of the limit (:func:`slot_limits`), so under overload the
  admitted calls are spread over the second instead of arriving in one bunch
  at its start. The shared variable ``$shv(max_call_rate)`` switches it
  (0 = no limit).
  Both change at run time (:func:`call_rate_rpcs`, ``callcontrol cluster
  call-rate``); counters ``edge_shed`` / ``edge_admitted`` (``kamcmd
  stats.get_statistics edge_shed edge_admitted``) say what the edge did.
- Calls from the nodes to the PSTN carrier and to far ends go out directly, not
  through the edge: the edge's job is to spread inbound calls; outbound legs
  already have their node, and a second hop would only add latency and one
  more thing to fail.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callcontrol.domain.contract import CAUSE_DESTINATIONS_FAILED, CAUSE_RETRY_ELSEWHERE
from provisioning.asterisk_config import AmiPlan, AsteriskConfigError, AsteriskPlan

DISPATCHER_SET = 1
#: Kamailio's dispatcher algorithm 4: round-robin over the active nodes.
ROUND_ROBIN = 4
#: Kamailio's dispatcher algorithm 0: hash over Call-ID (a phone's REGISTERs stay on one node).
HASH_CALL_ID = 0
FAILOVER_CODES = "500|501|502|503|504"
KAMAILIO_MODULES_DIR = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
KAMAILIO_FILES = ("kamailio.cfg", "dispatcher.list")
#: Ratelimit pipes 0..RATE_SLOTS-1 count new calls, one per tenth of a second
#: (TAILDROP: calls per 1 s window, checked only during its tenth).
RATE_SLOTS = 10
RATE_ALGORITHM = "TAILDROP"
#: The shared variable that switches the pipe (its value = calls/s, 0 = no limit).
RATE_VARIABLE = "max_call_rate"
#: Counters of the edge's admission, in Kamailio's ``script`` group.
SHED_COUNTER = "edge_shed"
ADMITTED_COUNTER = "edge_admitted"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClusterNode(_Part):
    """One Asterisk node with its own engine."""

    name: str = Field(pattern=r"^[a-z0-9-]{1,32}$")
    address: str
    """The node's own IP: PJSIP, ARI/HTTP and RTP bind to it."""
    sip_port: int = Field(default=5060, ge=1, le=65535)
    http_port: int = Field(default=8088, ge=1, le=65535)
    ami_port: int = Field(default=5038, ge=1, le=65535)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.address}:{self.sip_port}"

    @property
    def ari_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"


def _default_nodes() -> tuple[ClusterNode, ...]:
    return (
        ClusterNode(name="node1", address="127.0.3.11"),
        ClusterNode(name="node2", address="127.0.3.12"),
    )


class ClusterSettings(_Part):
    """The edge and its nodes (``CALLCONTROL_CLUSTER__*``). The defaults are the
    loopback cluster sandbox (docs/cluster.md); a deployment names its own."""

    edge_address: str = "127.0.3.1"
    edge_port: int = Field(default=5060, ge=1, le=65535)
    nodes: tuple[ClusterNode, ...] = Field(default_factory=_default_nodes)
    phone_source_address: str = "127.0.3.2"
    """The edge's second address: phones' requests reach the nodes from it."""
    carrier_match: tuple[str, ...] = ("127.0.3.16/28",)
    """Sources allowed to send new calls to the edge (the carriers)."""
    config_dir: str = "/etc/kamailio"
    """Where ``kamailio.cfg`` and ``dispatcher.list`` are installed (absolute)."""
    run_dir: str = "/run/kamailio"
    """Where the control socket for ``kamcmd`` lives (``kamailio_ctl``)."""
    ping_interval_s: int = Field(default=1, ge=1, le=3600)
    probing_threshold: int = Field(default=1, ge=1, le=10)
    inactive_threshold: int = Field(default=1, ge=1, le=10)
    node_timeout_ms: int = Field(default=2000, ge=100, le=60000)
    """A node that sends nothing (not even 100 Trying) this long is skipped."""
    children: int = Field(default=2, ge=1, le=64)
    node_engine_retries: int = Field(default=0, ge=0, le=10)
    """A node's dialplan asks its unreachable engine again this many times before
    503 (``calls.engine_retries`` of a single Asterisk): 0, so a call on a node
    whose engine is gone gets 503 at once and the edge tries the next node."""
    max_call_rate: int = Field(default=0, ge=0, le=1_000_000)
    """New calls per second the edge admits in total (carriers' and phones'
    INVITEs); beyond it the edge answers 503 itself. 0 = no limit, the
    default: a node's capacity depends on its machine and its call mix and is
    known only from a measurement (``python -m bench.cluster``), so a made-up
    default would either refuse paid traffic on a bigger machine or not
    protect a smaller one. Set it to the sum of the nodes' measured clean
    rates; with a node down the rest take at most that sum (the dispatcher
    does not lower it)."""
    shed_retry_after_s: int = Field(default=1, ge=0, le=3600)
    """``Retry-After`` of the edge's 503 (0 = none). Short: a carrier that
    honours it stops sending to the edge that long (RFC 3261 21.5.4)."""

    @field_validator("edge_address", "phone_source_address")
    @classmethod
    def _edge(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("carrier_match")
    @classmethod
    def _carriers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    @model_validator(mode="after")
    def _check(self) -> ClusterSettings:
        names = [node.name for node in self.nodes]
        if not names:
            raise ValueError("a cluster needs at least one node")
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")
        taken = {node.address for node in self.nodes}
        if self.phone_source_address in taken | {self.edge_address}:
            raise ValueError("phone_source_address must differ from the edge and the nodes")
        if not (self.config_dir.startswith("/") and self.run_dir.startswith("/")):
            raise ValueError("config_dir and run_dir must be absolute paths")
        return self

    @property
    def phone_socket(self) -> str:
        return f"udp:{self.phone_source_address}:{self.edge_port}"

    @property
    def edge_uri(self) -> str:
        return f"sip:{self.edge_address}:{self.edge_port}"

    def node(self, name: str) -> ClusterNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def slot_limits(limit: int) -> list[int]:
    """Calls each tenth of a second admits: ``limit`` in all, the remainder of
    ``limit / RATE_SLOTS`` spread evenly (5/s: one call in every other tenth).
    Off (0): 1 per tenth, a placeholder the switch keeps from applying."""
    if limit < 0:
        raise ValueError("a call rate is 0 (no limit) or more")
    if limit == 0:
        return [1] * RATE_SLOTS
    return [
        (slot + 1) * limit // RATE_SLOTS - slot * limit // RATE_SLOTS for slot in range(RATE_SLOTS)
    ]


def call_rate_rpcs(limit: int) -> list[list[str]]:
    """The ``kamcmd`` commands that set the edge's admission limit at run time.

    The pipes and the switch change in the order that never sheds more than
    either the old or the new setting would: to switch the limit off, the
    switch first; to set one, the pipes first."""
    pipes = [
        ["rl.set_pipe", str(slot), RATE_ALGORITHM, str(share)]
        for slot, share in enumerate(slot_limits(limit))
    ]
    switch = ["pv.shvSet", RATE_VARIABLE, "int", str(limit)]
    return [switch, *pipes] if limit == 0 else [*pipes, switch]


def node_app(app: str, node: ClusterNode) -> str:
    """The ARI app of a node's engine: its own name, so engines never replace each other."""
    return f"{app}-{node.name}"


def node_asterisk_plan(
    base: AsteriskPlan, cluster: ClusterSettings, node: ClusterNode
) -> AsteriskPlan:
    """``base`` (the engine's plan) bound to one node: SIP, HTTP, RTP and AMI on
    the node's address, inbound calls from the edge only, the node's app name."""
    address = base.address.model_copy(
        update={
            "sip_bind": f"{node.address}:{node.sip_port}",
            "media_address": node.address,
            "carrier_match": (cluster.edge_address,),
        }
    )
    ami = None
    if base.ami is not None:
        ami = AmiPlan(
            host=node.address,
            port=node.ami_port,
            username=base.ami.username,
            password=base.ami.password,
            permit=base.ami.permit,
        )
    return replace(
        base,
        app=node_app(base.app, node),
        http_host=node.address,
        http_port=node.http_port,
        address=address,
        ami=ami,
        allowed_origins=(),
        system_name=node.name,
        engine_retries=cluster.node_engine_retries,
    )


def render_kamailio_config(cluster: ClusterSettings) -> dict[str, str]:
    """File name → text of the edge's configuration."""
    if cluster.edge_address in {node.address for node in cluster.nodes}:
        raise AsteriskConfigError("the edge and a node cannot share an address")
    return {"kamailio.cfg": _kamailio_cfg(cluster), "dispatcher.list": _dispatcher_list(cluster)}


def _dispatcher_list(cluster: ClusterSettings) -> str:
    lines = [
        "# callcontrol: the Asterisk nodes behind the edge. Rendered; do not edit.",
        "# setid destination flags priority attributes",
    ]
    for node in cluster.nodes:
        lines.append(f"{DISPATCHER_SET} {node.sip_uri} 0 0 duid={node.name}")
    return "\n".join(lines) + "\n"


def _carrier_check(cluster: ClusterSettings) -> str:
    tests = " || ".join(
        f'is_in_subnet("$si", "{ipaddress.ip_network(net, strict=False)}")'
        for net in cluster.carrier_match
    )
    return tests or "0"


def _shed_headers(cluster: ClusterSettings) -> str:
    headers = []
    if cluster.shed_retry_after_s:
        headers.append(f"Retry-After: {cluster.shed_retry_after_s}")
    headers.append(f"Reason: Q.850;cause={CAUSE_RETRY_ELSEWHERE}")
    return "".join(f"{h}\\r\\n" for h in headers)


def _kamailio_cfg(cluster: ClusterSettings) -> str:
    head = _HEAD.format(
        listen=f"udp:{cluster.edge_address}:{cluster.edge_port}",
        phone_listen=cluster.phone_socket,
        phone_alias=f"{cluster.phone_source_address}:{cluster.edge_port}",
        children=cluster.children,
        alias=f"{cluster.edge_address}:{cluster.edge_port}",
        mpath=KAMAILIO_MODULES_DIR,
        list_file=f"{cluster.config_dir.rstrip('/')}/dispatcher.list",
        ping_interval=cluster.ping_interval_s,
        probing_threshold=cluster.probing_threshold,
        inactive_threshold=cluster.inactive_threshold,
        ping_from=f"sip:edge@{cluster.edge_address}",
        node_timeout=cluster.node_timeout_ms,
        carrier_socket=f"udp:{cluster.edge_address}:{cluster.edge_port}",
        ctl=f"unix:{cluster.run_dir.rstrip('/')}/kamailio_ctl",
        rate_pipes="\n".join(
            f'modparam("ratelimit", "pipe", "{slot}:{RATE_ALGORITHM}:{share}")'
            for slot, share in enumerate(slot_limits(cluster.max_call_rate))
        ),
        rate_switch=f"{RATE_VARIABLE}=i:{cluster.max_call_rate}",
        shed=SHED_COUNTER,
        admitted=ADMITTED_COUNTER,
    )
    routes = (
        _ROUTES.replace("@CARRIERS@", _carrier_check(cluster))
        .replace("@SET@", str(DISPATCHER_SET))
        .replace("@ALG@", str(ROUND_ROBIN))
        .replace("@FAILOVER@", FAILOVER_CODES)
        .replace("@FINAL_503_CAUSE@", str(CAUSE_DESTINATIONS_FAILED))
        .replace("@CARRIER_SOCKET@", f"udp:{cluster.edge_address}:{cluster.edge_port}")
        .replace("@PHONE_SOCKET@", cluster.phone_socket)
        .replace("@PHONE_ADDRESS@", cluster.phone_source_address)
        .replace("@HASH@", str(HASH_CALL_ID))
        .replace("@RATE_VARIABLE@", RATE_VARIABLE)
        .replace("@RATE_SLOT_US@", str(1_000_000 // RATE_SLOTS))
        .replace("@SHED@", SHED_COUNTER)
        .replace("@ADMITTED@", ADMITTED_COUNTER)
        .replace("@SHED_HEADERS@", _shed_headers(cluster))
    )
    return head + routes


_HEAD = """#!KAMAILIO
# callcontrol: the SIP edge in front of the Asterisk nodes (docs/cluster.md).
# Rendered by `callcontrol cluster render`; do not edit.

debug=2
log_stderror=yes
memdbg=5
memlog=5
children={children}
auto_aliases=no
disable_tcp=yes
listen={listen}
# Phones' requests go to the nodes from this second address (not the carrier's).
listen={phone_listen}
alias="{alias}"
alias="{phone_alias}"
server_header="Server: callcontrol-edge"
user_agent_header="User-Agent: callcontrol-edge"

mpath="{mpath}"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "ipops.so"
loadmodule "dispatcher.so"
loadmodule "ctl.so"
loadmodule "path.so"
loadmodule "ratelimit.so"
loadmodule "statistics.so"

modparam("ctl", "binrpc", "{ctl}")

# No reply at all (not even 100 Trying) within this: the node is skipped.
modparam("tm", "fr_timer", {node_timeout})
modparam("tm", "fr_inv_timer", 120000)
# A node's 503 reaches the caller as 503 (tm would make it 500, RFC 3261 16.7):
# the carrier's "try another route" (a retryable failure must be 503 there too).
modparam("tm", "remap_503_500", 0)
modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)
# A node's INVITE to a phone carries the Path of its REGISTER as Route: the
# Path's received= is where the phone registered from.
modparam("path", "use_received", 1)

# Admission of new calls (route[ADMIT]): one TAILDROP pipe per tenth of a
# second, each a tenth of the limit per 1 s window, switched by
# $shv(max_call_rate) (0 = no limit); all settable at run time
# (kamcmd rl.set_pipe / pv.shvSet: `callcontrol cluster call-rate`).
modparam("ratelimit", "timer_interval", 1)
{rate_pipes}
modparam("pv", "shvset", "{rate_switch}")
modparam("statistics", "variable", "{shed}")
modparam("statistics", "variable", "{admitted}")

modparam("dispatcher", "list_file", "{list_file}")
# flags 2: keep the other nodes for ds_next_dst in a failure_route.
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_ping_method", "OPTIONS")
modparam("dispatcher", "ds_ping_from", "{ping_from}")
modparam("dispatcher", "ds_ping_interval", {ping_interval})
# Probe every node, up or down, so a node is out after this many missed
# probes and back in after as many answered ones.
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", {probing_threshold})
modparam("dispatcher", "ds_inactive_threshold", {inactive_threshold})
modparam("dispatcher", "ds_ping_reply_codes", "class=2")
modparam("dispatcher", "ds_default_socket", "{carrier_socket}")
"""

_ROUTES = """
request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (has_totag()) {
        route(IN_DIALOG);
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    if (is_method("ACK")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    t_check_trans();
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {
        sl_send_reply("200", "OK");
        exit;
    }
    if (ds_is_from_list("@SET@")) {
        route(FROM_NODE);
        exit;
    }
    if (is_method("INVITE")) {
        route(ADMIT);
    }
    if (!(@CARRIERS@)) {
        route(FROM_PHONE);
        exit;
    }
    if (!is_method("INVITE")) {
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }
    remove_hf("Route");
    record_route();
    if (!ds_select_dst("@SET@", "@ALG@")) {
        xlog("L_WARN", "edge: no node up for $ci\\n");
        sl_send_reply("503", "No Node Available");
        exit;
    }
    force_send_socket(@CARRIER_SOCKET@);
    route(TO_NODE);
}

# A new call (a carrier's or a phone's INVITE; a retransmission of an admitted
# one was absorbed by t_check_trans): beyond the edge's call rate, 503 at
# once, statelessly, and no node ever sees it. The pipe is the tenth of the
# second the request arrived in ($TV(u): its microseconds).
route[ADMIT] {
    $var(slot) = $TV(u) / @RATE_SLOT_US@;
    if ($shv(@RATE_VARIABLE@) > 0 && !rl_check("$var(slot)")) {
        update_stat("@SHED@", "+1");
        append_to_reply("@SHED_HEADERS@");
        sl_send_reply("503", "Service Unavailable");
        exit;
    }
    update_stat("@ADMITTED@", "+1");
}

# A customer's phone: REGISTER (with a Path back to us) and calls, to a node
# from the phones' address; the node authenticates it.
route[FROM_PHONE] {
    if (!is_method("REGISTER|INVITE")) {
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }
    remove_hf("Route");
    if (is_method("REGISTER")) {
        # Asterisk keeps a Path only from a UA that says it supports it (else
        # 420); the edge is the phones' only way in, so it says so for them.
        if (!search("^(Supported|k):.*path")) {
            append_hf("Supported: path\\r\\n");
        }
        if (!add_path_received()) {
            sl_send_reply("500", "Path Failed");
            exit;
        }
    } else {
        record_route();
    }
    if (!ds_select_dst("@SET@", "@HASH@")) {
        xlog("L_WARN", "edge: no node up for phone $ci\\n");
        sl_send_reply("503", "No Node Available");
        exit;
    }
    force_send_socket(@PHONE_SOCKET@);
    xlog("L_INFO", "edge: phone $rm $fU from $si:$sp\\n");
    route(TO_NODE);
}

# A node calling a phone: its only Route is the Path of the phone's REGISTER
# (ours), whose received= is where the phone registered from. (loose_route()
# would drop a lone local Route of a new request and return false.)
route[FROM_NODE] {
    $var(path) = $(hdr(Route){nameaddr.uri});
    if (!is_method("INVITE") || $(var(path){uri.host}) != "@PHONE_ADDRESS@") {
        xlog("L_NOTICE", "edge: $rm $ru from node $si refused (Route: $hdr(Route))\\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }
    $var(phone) = $(var(path){uri.param,received}{s.unescape.param});
    remove_hf("Route");
    if ($var(phone) != "") {
        $du = $var(phone);
    }
    record_route();
    xlog("L_INFO", "edge: $ci node $si -> phone $du\\n");
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}

route[TO_NODE] {
    xlog("L_INFO", "edge: $ci -> $du\\n");
    t_on_failure("NODE_FAILED");
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}

route[IN_DIALOG] {
    if (loose_route()) {
        if (!t_relay()) {
            sl_reply_error();
        }
        exit;
    }
    if (is_method("ACK")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    sl_send_reply("404", "Not Here");
}

failure_route[NODE_FAILED] {
    if (t_is_canceled()) {
        exit;
    }
    if (t_branch_timeout() && !t_branch_replied()) {
        xlog("L_WARN", "edge: node $du did not answer $ci; marked down\\n");
        ds_mark_dst("ip");
    } else if (t_check_status("503") && $(T_rpl($hdr(Reason))) =~ "cause=@FINAL_503_CAUSE@") {
        exit;  # routed by the node's engine, every destination failed: final
    } else if (t_check_status("@FAILOVER@")) {
        xlog("L_WARN", "edge: node $du answered $T_reply_code for $ci; next node\\n");
    } else {
        exit;
    }
    if (ds_next_dst()) {
        route(TO_NODE);
    }
}
"""
