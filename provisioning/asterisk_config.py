"""The Asterisk configuration the engine needs, rendered from settings.

Rules this module keeps:
- Pure: :func:`render_asterisk_config` turns an :class:`AsteriskPlan` and the
  text of the project's dialplan and module list into ``{file name: text}``;
  it reads nothing and writes nothing. ``callcontrol asterisk-config render``
  writes the result, the sandbox installs it with its own (loopback) plan.
- Nothing of the test bed is built in: carriers, the PSTN trunk, bind and media
  addresses all come from the plan; the benchmark's carrier and context only
  with ``bench``. A plan without a carrier is refused (no call could arrive).
- Every name the engine relies on comes from one place: the contexts from
  ``callcontrol/domain/contract.py``, the trunk endpoints from
  ``settings.calls``, the app name from ``settings.ari.app``.
- No placeholder survives: the dialplan's ``{{ARI_APP}}`` is filled and any
  other ``{{NAME}}`` left is an error.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from callcontrol.domain.contract import (
    INBOUND_CONTEXT,
    OUTBOUND_CONTEXT,
    REJECT_CONTEXT,
    app_variable,
)
from provisioning.settings import AsteriskSettings

CARRIER_ENDPOINT = "callcontrol-carrier"
BENCH_CARRIER_ENDPOINT = "callcontrol-bench-carrier"
BENCH_CONTEXT = "bench-twin"
# Test beds (bench mode) with the ARI executor also get the FastAGI dialplan
# under these contexts, reached from their own carrier address, so one Asterisk
# runs both executors side by side (tests, bench.calls --paths twin,agi,engine).
BENCH_AGI_CARRIER_ENDPOINT = "callcontrol-bench-agi-carrier"
BENCH_AGI_CARRIER_IP = "127.0.0.8"
BENCH_AGI_CONTEXTS = {
    INBOUND_CONTEXT: "callcontrol-agi-inbound",
    OUTBOUND_CONTEXT: "callcontrol-agi-outbound",
}
BENCH_AGI_OUTBOUND_PREFIX = "*99"
"""Test beds: a SIP account's call dialled as ``*99<number>`` goes to the FastAGI
dialplan (its endpoint's context is the ARI one), so tests run outbound calls
through both executors on one Asterisk."""
TRANSPORT = "transport-udp"
ACCOUNT_TEMPLATES = ("callcontrol-account", "callcontrol-account-aor", "callcontrol-account-auth")
PROVISIONING_INCLUDE = "pjsip_callcontrol.conf"
ADMISSION_DIALPLAN = "extensions_callcontrol_admission.conf"
"""``[callcontrol-admission]``, Gosub'ed by both executors' dialplans."""
BENCH_AGI_APP_SUFFIX = "-agi"
"""Test beds: the FastAGI engine's ARI app is the ARI engine's plus this, and the
bed's FastAGI dialplan counts and sheds its calls under that app's variables."""
_PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_]+)\}\}")


class AsteriskConfigError(ValueError):
    """The plan cannot make a working configuration; ``str()`` says what to set."""


@dataclass(frozen=True)
class AmiPlan:
    host: str
    port: int
    username: str
    password: str
    permit: tuple[str, ...]


@dataclass(frozen=True)
class AsteriskPlan:
    """Everything the rendered files depend on."""

    app: str
    ari_username: str
    ari_password: str
    http_host: str
    http_port: int
    realm: str
    pstn_endpoint: str
    external_endpoint: str
    address: AsteriskSettings
    ami: AmiPlan | None = None
    allowed_origins: tuple[str, ...] = field(default=())
    executor: str = "ari"  # settings.calls.executor: "ari" or "agi"
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    engine_retries: int = 2
    """settings.calls.engine_retries: how often the dialplan asks an unreachable
    engine again, a second apart, before answering 503."""
    # Several Asterisks on one database (a cluster node): prefixes channel ids
    # (asterisk.conf ``systemname``), so two nodes never make the same call id.
    system_name: str | None = None

    @classmethod
    def from_settings(cls, settings: object) -> AsteriskPlan:
        """The plan of a ``callcontrol.settings.Settings`` (duck-typed to keep imports one-way)."""
        ari = settings.ari  # type: ignore[attr-defined]
        ami = settings.ami  # type: ignore[attr-defined]
        calls = settings.calls  # type: ignore[attr-defined]
        address: AsteriskSettings = settings.asterisk  # type: ignore[attr-defined]
        url = urlsplit(str(ari.url))
        ami_plan = None
        if ami.enabled:
            ami_plan = AmiPlan(
                host=ami.host,
                port=ami.port,
                username=ami.username,
                password=ami.password.get_secret_value(),
                permit=address.ami_permit,
            )
        return cls(
            app=ari.app,
            ari_username=ari.username,
            ari_password=ari.password.get_secret_value(),
            http_host=url.hostname or "127.0.0.1",
            http_port=url.port or 8088,
            realm=settings.provisioning.realm,  # type: ignore[attr-defined]
            pstn_endpoint=calls.pstn_endpoint,
            external_endpoint=calls.external_endpoint,
            address=address,
            ami=ami_plan,
            executor=calls.executor,
            agi_host=settings.agi.host,  # type: ignore[attr-defined]
            agi_port=settings.agi.port,  # type: ignore[attr-defined]
            engine_retries=calls.engine_retries,
        )

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The PJSIP endpoints this configuration defines (``--check`` looks for them)."""
        names = [CARRIER_ENDPOINT, self.external_endpoint]
        if self.address.pstn_contact is not None:
            names.append(self.pstn_endpoint)
        if self.address.bench:
            names.append(BENCH_CARRIER_ENDPOINT)
        if self.bench_agi:
            names.append(BENCH_AGI_CARRIER_ENDPOINT)
        return tuple(names)

    @property
    def bench_agi(self) -> bool:
        return self.address.bench and self.executor == "ari"


@dataclass(frozen=True)
class ProjectSources:
    """The project files the configuration is made of besides the plan."""

    dialplan: str
    bench_dialplan: str
    modules: str
    agi_dialplan: str = ""
    asterisk_conf: str = ""
    admission_dialplan: str = ""

    @classmethod
    def read(cls, project: Path) -> ProjectSources:
        """From a source tree's ``dialplan/`` and ``asterisk-conf/``."""
        return cls(
            dialplan=(project / "dialplan" / "extensions_callcontrol.conf").read_text("utf-8"),
            bench_dialplan=(project / "dialplan" / "extensions_bench.conf").read_text("utf-8"),
            modules=(project / "asterisk-conf" / "modules.conf").read_text("utf-8"),
            agi_dialplan=(project / "dialplan" / "extensions_callcontrol_agi.conf").read_text(
                "utf-8"
            ),
            asterisk_conf=(project / "asterisk-conf" / "asterisk.conf").read_text("utf-8"),
            admission_dialplan=(project / "dialplan" / ADMISSION_DIALPLAN).read_text("utf-8"),
        )

    @classmethod
    def packaged(cls) -> ProjectSources:
        """The same files as installed with the package (``provisioning/asterisk_sources``):
        a wheel renders without a source tree."""
        folder = resources.files("provisioning.asterisk_sources")
        return cls(
            dialplan=(folder / "extensions_callcontrol.conf").read_text("utf-8"),
            bench_dialplan=(folder / "extensions_bench.conf").read_text("utf-8"),
            modules=(folder / "modules.conf").read_text("utf-8"),
            asterisk_conf=(folder / "asterisk.conf").read_text("utf-8"),
            agi_dialplan=(folder / "extensions_callcontrol_agi.conf").read_text("utf-8"),
            admission_dialplan=(folder / ADMISSION_DIALPLAN).read_text("utf-8"),
        )


def render_asterisk_config(plan: AsteriskPlan, sources: ProjectSources) -> dict[str, str]:
    """File name → text of every file the engine needs in ``/etc/asterisk``."""
    _check(plan)
    dialplan = sources.agi_dialplan if plan.executor == "agi" else sources.dialplan
    files = {
        "ari.conf": _ari_conf(plan),
        "http.conf": _http_conf(plan),
        "pjsip.conf": _pjsip_conf(plan),
        PROVISIONING_INCLUDE: _provisioning_include(),
        "rtp.conf": _rtp_conf(plan.address),
        "extensions.conf": _extensions_conf(plan),
        "extensions_callcontrol.conf": _fill(dialplan, plan, "extensions_callcontrol.conf"),
        ADMISSION_DIALPLAN: sources.admission_dialplan,
        "modules.conf": sources.modules,
    }
    if plan.ami is not None:
        files["manager.conf"] = _manager_conf(plan.ami)
    if plan.system_name is not None:
        files["asterisk.conf"] = _with_system_name(sources.asterisk_conf, plan.system_name)
    if plan.address.bench:
        files["extensions_bench.conf"] = _bench_dialplan(sources.bench_dialplan, plan)
    if plan.bench_agi:
        files["extensions_callcontrol_agi.conf"] = _bench_agi_dialplan(sources.agi_dialplan, plan)
    return files


def _check(plan: AsteriskPlan) -> None:
    address = plan.address
    if not address.carrier_match:
        raise AsteriskConfigError(
            "no inbound carrier: set CALLCONTROL_ASTERISK__CARRIER_MATCH "
            '(e.g. \'["198.51.100.10", "203.0.113.0/24"]\')'
        )
    for item in (*address.carrier_match, *plan.address.ami_permit):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise AsteriskConfigError(f"{item!r} is not an IP address or network") from exc
    for name in ("media_address", "external_address"):
        value = getattr(address, name)
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError as exc:
                raise AsteriskConfigError(
                    f"CALLCONTROL_ASTERISK__{name.upper()}={value!r} is not an IP address"
                ) from exc


def _with_system_name(asterisk_conf: str, name: str) -> str:
    if "\n[options]\n" not in asterisk_conf:
        raise AsteriskConfigError("asterisk.conf has no [options] section for systemname")
    return asterisk_conf.replace("\n[options]\n", f"\n[options]\nsystemname = {name}\n", 1)


def _fill(text: str, plan: AsteriskPlan, source: str) -> str:
    values = {
        "ARI_APP": plan.app,
        "APP_VAR": app_variable("", plan.app),
        "AGI_HOST": plan.agi_host,
        "AGI_PORT": str(plan.agi_port),
        "ENGINE_RETRIES": str(plan.engine_retries),
    }

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise AsteriskConfigError(f"{source}: unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(substitute, text)


def _ari_conf(plan: AsteriskPlan) -> str:
    origins = plan.allowed_origins or (f"http://{plan.http_host}:{plan.http_port}",)
    return (
        "; callcontrol: the engine's ARI user (settings.ari). Rendered; do not edit.\n"
        "[general]\nenabled = yes\npretty = no\n"
        f"allowed_origins = {','.join(origins)}\n\n"
        f"[{plan.ari_username}]\ntype = user\nread_only = no\n"
        f"password = {plan.ari_password}\npassword_format = plain\n"
    )


def _http_conf(plan: AsteriskPlan) -> str:
    return (
        "; callcontrol: the HTTP server carrying ARI (REST + events WebSocket).\n"
        "[general]\nenabled = yes\n"
        f"bindaddr = {plan.http_host}\nbindport = {plan.http_port}\n"
        "; The engine keeps one events WebSocket plus a few REST connections.\n"
        "sessionlimit = 1000\nsession_keep_alive = 15000\n"
    )


def _manager_conf(ami: AmiPlan) -> str:
    permits = "".join(f"permit = {net}\n" for net in ami.permit)
    classes = "system,call,command,reporting,originate,agent,user,dialplan"
    return (
        "; callcontrol: AMI for pjsip reloads (settings.ami).\n"
        f"[general]\nenabled = yes\nport = {ami.port}\nbindaddr = {ami.host}\n"
        "displayconnects = no\n\n"
        f"[{ami.username}]\nsecret = {ami.password}\n"
        f"deny = 0.0.0.0/0.0.0.0\n{permits}"
        f"read = {classes}\nwrite = {classes}\nwritetimeout = 1000\n"
    )


def _rtp_conf(address: AsteriskSettings) -> str:
    return (
        "; callcontrol: RTP ports.\n[general]\n"
        f"rtpstart = {address.rtp_start}\nrtpend = {address.rtp_end}\n"
        f"strictrtp = {'yes' if address.strict_rtp else 'no'}\nicesupport = no\n"
    )


def _extensions_conf(plan: AsteriskPlan) -> str:
    text = (
        "; callcontrol: every call goes to the Stasis app (extensions_callcontrol.conf).\n"
        "[general]\nstatic = yes\nwriteprotect = yes\nclearglobalvars = no\n\n[globals]\n\n"
        "#include extensions_callcontrol.conf\n"
        f"#include {ADMISSION_DIALPLAN}\n"
    )
    if plan.executor == "agi":
        text = text.replace("the Stasis app", "the engine over FastAGI")
    text += "#include extensions_bench.conf\n" if plan.address.bench else ""
    return text + ("#include extensions_callcontrol_agi.conf\n" if plan.bench_agi else "")


def _bench_agi_dialplan(text: str, plan: AsteriskPlan) -> str:
    agi_plan = replace(plan, app=plan.app + BENCH_AGI_APP_SUFFIX)
    filled = _fill(text, agi_plan, "extensions_callcontrol_agi.conf")
    for context, bench_context in BENCH_AGI_CONTEXTS.items():
        filled = filled.replace(f"[{context}]", f"[{bench_context}]")
    return filled + (
        f"\n; Test beds only: a SIP account's call dialled as {BENCH_AGI_OUTBOUND_PREFIX}<number>"
        " is carried\n; out by the FastAGI executor (more specific than the ARI pattern).\n"
        f"[{OUTBOUND_CONTEXT}]\n"
        f"exten => _{BENCH_AGI_OUTBOUND_PREFIX}.,1,Goto({BENCH_AGI_CONTEXTS[OUTBOUND_CONTEXT]},"
        f"${{EXTEN:{len(BENCH_AGI_OUTBOUND_PREFIX)}}},1)\n"
    )


def _bench_dialplan(text: str, plan: AsteriskPlan) -> str:
    # The twin dials far ends through the external trunk, like the engine.
    return _fill(text, plan, "extensions_bench.conf").replace(
        "PJSIP/callcontrol-external/", f"PJSIP/{plan.external_endpoint}/"
    )


def _provisioning_include() -> str:
    return (
        "; callcontrol: customers' SIP accounts, written by the provisioning module\n"
        "; (CALLCONTROL_PROVISIONING__FILE_PATH must name this file); empty at first.\n"
    )


def _pjsip_conf(plan: AsteriskPlan) -> str:
    return "\n".join(
        [
            _pjsip_head(plan),
            _pjsip_carriers(plan),
            _pjsip_trunks(plan),
            _pjsip_accounts(plan),
            f"#include {PROVISIONING_INCLUDE}\n",
        ]
    )


def _media_lines(address: AsteriskSettings) -> str:
    lines = "direct_media = no\nrtp_symmetric = yes\n"
    if address.media_address is not None:
        lines += f"media_address = {address.media_address}\nbind_rtp_to_media_address = yes\n"
    return lines


def _pjsip_head(plan: AsteriskPlan) -> str:
    address = plan.address
    nat = ""
    if address.external_address is not None:
        nat = (
            f"external_signaling_address = {address.external_address}\n"
            f"external_media_address = {address.external_address}\n"
        )
    return (
        "; callcontrol: SIP. Rendered by `callcontrol asterisk-config render`; do not edit.\n"
        "; Requests are identified by source address first, so carriers are matched\n"
        "; by IP and customers' phones by user name.\n\n"
        "[global]\ntype = global\nuser_agent = callcontrol\n"
        "endpoint_identifier_order = ip,username\n"
        f"default_realm = {plan.realm}\nkeep_alive_interval = 0\n"
        "; new requests are held back (UDP: left to retransmission) only while\n"
        "; pjsip's own queues are backed up, not while any Stasis subscriber's is\n"
        "; (e.g. AMI's, which lags first under load and then stalls every INVITE)\n"
        "taskprocessor_overload_trigger = pjsip_only\n\n"
        "[system]\ntype = system\nthreadpool_initial_size = 8\nthreadpool_max_size = 32\n\n"
        f"[{TRANSPORT}]\ntype = transport\nprotocol = udp\nbind = {address.sip_bind}\n{nat}\n"
        "; --- shared settings of carrier and trunk endpoints\n"
        "[callcontrol-endpoint](!)\ntype = endpoint\n"
        f"transport = {TRANSPORT}\ndisallow = all\nallow = ulaw,alaw\n"
        f"{_media_lines(address)}"
        "trust_id_inbound = yes\ntrust_id_outbound = yes\nsend_pai = yes\nsend_rpid = no\n"
        "send_diversion = yes\n"
        "; a call arriving on a trunk that only receives calls from us is refused (403)\n"
        f"context = {REJECT_CONTEXT}\nidentify_by = ip\n"
    )


def _identify(endpoint: str, matches: tuple[str, ...]) -> str:
    lines = "".join(f"match = {item}\n" for item in matches)
    return f"[{endpoint}-identify]\ntype = identify\nendpoint = {endpoint}\n{lines}"


def _pjsip_carriers(plan: AsteriskPlan) -> str:
    text = (
        "; --- the inbound carrier(s): calls to our DIDs\n"
        f"[{CARRIER_ENDPOINT}](callcontrol-endpoint)\ncontext = {INBOUND_CONTEXT}\n"
        "send_connected_line = no\n\n" + _identify(CARRIER_ENDPOINT, plan.address.carrier_match)
    )
    if plan.address.bench:
        text += (
            "\n; --- the benchmark's dialplan-only carrier (bench mode only)\n"
            f"[{BENCH_CARRIER_ENDPOINT}](callcontrol-endpoint)\ncontext = {BENCH_CONTEXT}\n"
            "send_connected_line = no\n\n" + _identify(BENCH_CARRIER_ENDPOINT, ("127.0.0.9",))
        )
    if plan.bench_agi:
        text += (
            "\n; --- the test beds' carrier for the FastAGI dialplan (bench mode only)\n"
            f"[{BENCH_AGI_CARRIER_ENDPOINT}](callcontrol-endpoint)\n"
            f"context = {BENCH_AGI_CONTEXTS[INBOUND_CONTEXT]}\nsend_connected_line = no\n\n"
            + _identify(BENCH_AGI_CARRIER_ENDPOINT, (BENCH_AGI_CARRIER_IP,))
        )
    return text


def _pjsip_trunks(plan: AsteriskPlan) -> str:
    text = (
        "; --- SIP URIs and customers' servers: PJSIP/<endpoint>/sip:user@host\n"
        f"[{plan.external_endpoint}](callcontrol-endpoint)\n"
    )
    contact = plan.address.pstn_contact
    if contact is not None:
        text += (
            f"\n; --- the PSTN carrier trunk: PJSIP/+4930123456@{plan.pstn_endpoint}\n"
            f"[{plan.pstn_endpoint}]\ntype = aor\ncontact = {contact}\nqualify_frequency = 0\n\n"
            f"[{plan.pstn_endpoint}](callcontrol-endpoint)\naors = {plan.pstn_endpoint}\n"
        )
    return text


def _pjsip_accounts(plan: AsteriskPlan) -> str:
    endpoint, aor, auth = ACCOUNT_TEMPLATES
    return (
        "; --- templates of customers' SIP accounts (provisioning writes the accounts)\n"
        f"[{endpoint}](!)\ntype = endpoint\ntransport = {TRANSPORT}\n"
        "disallow = all\nallow = ulaw,alaw\n"
        f"{_media_lines(plan.address)}"
        "force_rport = yes\nrewrite_contact = yes\n"
        "trust_id_inbound = no\ntrust_id_outbound = yes\n"
        f"context = {OUTBOUND_CONTEXT}\nidentify_by = username,auth_username\n\n"
        f"[{aor}](!)\ntype = aor\nmax_contacts = 5\nremove_existing = yes\n"
        "qualify_frequency = 0\n\n"
        f"[{auth}](!)\ntype = auth\nauth_type = digest\nrealm = {plan.realm}\n"
    )
