"""Settings of the provisioning side: where SIP accounts go and how Asterisk learns of them.

``ProvisioningSettings`` is meant to become ``Settings.provisioning``
(``CALLCONTROL_PROVISIONING__BACKEND=realtime`` ...). Until it is,
:func:`provisioning_settings` reads the attribute when present and falls back
to the defaults.

Rules kept here:

- ``realm`` is the realm rendered in every account's auth section (``realm=``)
  and the one the stored HA1 was computed with. pjsip challenges with the
  auth's ``realm`` when set and otherwise with ``[global] default_realm``
  (default ``asterisk``); since the realm is always written explicitly, the
  global default does not matter. Changing ``realm`` invalidates every stored
  digest: all passwords must then be reset.
- Trunks (the PSTN carrier) are written by the file back-end only; the realtime
  back-end writes SIP accounts only, so trunks with ``backend=realtime`` are
  refused (keep them in the static ``pjsip.conf``, as the test bed does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from callcontrol.domain.errors import InvalidInput
from provisioning.pjsip import TrunkAuth, TrunkSpec


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AmiSettings(_Part):
    """Asterisk's manager interface (pjsip reloads); ``callcontrol.settings`` re-exports it."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = "callcontrol"
    password: SecretStr = SecretStr("callcontrol")


class TrunkSettings(_Part):
    """A carrier trunk rendered into the include file (file back-end only)."""

    name: str
    host: str
    port: int = Field(default=5060, ge=1, le=65535)
    transport: str = "transport-udp"
    match_ips: tuple[str, ...] = ()
    context: str = "callcontrol-inbound"
    codecs: tuple[str, ...] = ("ulaw", "alaw")
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    auth_realm: str | None = None
    qualify_frequency: int | None = None

    def to_spec(self) -> TrunkSpec:
        """The renderer's spec; raises ``InvalidInput`` for a bad name, host or address."""
        auth = None
        if self.auth_username is not None:
            if self.auth_password is None:
                raise InvalidInput(f"trunk {self.name!r}: auth_username needs auth_password")
            auth = TrunkAuth(
                self.auth_username, self.auth_password.get_secret_value(), self.auth_realm
            )
        return TrunkSpec(
            name=self.name,
            host=self.host,
            port=self.port,
            transport=self.transport,
            match_ips=self.match_ips,
            context=self.context,
            codecs=self.codecs,
            outbound_auth=auth,
            qualify_frequency=self.qualify_frequency,
        )


class ProvisioningSettings(_Part):
    backend: Literal["file", "realtime"] = "file"
    # The include file pjsip.conf #includes; in the sandbox
    # <chroot>/etc/asterisk/pjsip_callcontrol.conf (SandboxLayout.etc_asterisk).
    file_path: Path = Path("./var/asterisk/pjsip_callcontrol.conf")
    # Render account sections on pjsip.conf's [callcontrol-account](!) templates.
    use_templates: bool = True
    realm: str = Field(default="callcontrol", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # The domain customers put in their phones (shown with login and password).
    sip_domain: str = "127.0.0.1"
    # PostgreSQL URL of the database Asterisk reads through res_config_pgsql
    # (postgresql+asyncpg://user:pass@host/asterisk); realtime back-end only.
    realtime_url: SecretStr | None = None
    # Changes are gathered until this long passes without a new one, then one reload.
    reload_coalesce_s: float = Field(default=0.5, ge=0)
    # ... but a steady stream of changes still reloads at least this often.
    reload_max_delay_s: float = Field(default=5.0, gt=0)
    # First wait before a failed reload is retried (doubles up to 60 s).
    reload_retry_s: float = Field(default=2.0, gt=0)
    ami_timeout_s: float = Field(default=10.0, gt=0)
    # How the file back-end makes Asterisk re-read pjsip.conf: "ari" (PUT
    # /ari/asterisk/modules/res_pjsip.so with the engine's ARI user), "ami"
    # (ModuleLoad; needs CALLCONTROL_AMI__ENABLED), "off" (Asterisk sees the
    # changes on its next reload), "auto": AMI when it is enabled, else ARI.
    reload_via: Literal["auto", "ari", "ami", "off"] = "auto"
    reload_timeout_s: float = Field(default=10.0, gt=0)  # an ARI reload's answer
    # Per-account pjsip options.
    max_contacts: int = Field(default=1, ge=1, le=100)
    qualify_frequency: int | None = Field(default=None, ge=0, le=86400)
    transport: str | None = None  # None: template/pjsip default (realtime: transport-udp)
    media_address: str | None = None  # realtime rows only (templates carry it for files)
    # Realtime rows only: the AOR keeps a REGISTER's Path and calls to the phone
    # follow it (a cluster: phones register through the Kamailio edge, docs/cluster.md);
    # the contact is then kept as sent (rewrite_contact=no: the source is the edge).
    support_path: bool = False
    trunks: tuple[TrunkSettings, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> ProvisioningSettings:
        if self.backend == "realtime":
            if self.realtime_url is None:
                raise ValueError("backend=realtime needs realtime_url")
            if self.trunks:
                raise ValueError("trunks are written by the file backend only")
        if self.reload_max_delay_s < self.reload_coalesce_s:
            raise ValueError("reload_max_delay_s must be >= reload_coalesce_s")
        return self


class AsteriskSettings(_Part):
    """The address plan of the Asterisk the engine runs beside
    (``callcontrol asterisk-config render``; see ``provisioning/asterisk_config.py``).

    No default names a carrier or trunk: a production render must say where
    its carriers are. The sandbox passes its own loopback test plan.
    """

    sip_bind: str = Field(default="0.0.0.0:5060", pattern=r"^[^\s:]+:[0-9]{1,5}$")
    """The PJSIP UDP transport's bind address (``host:port``)."""
    external_address: str | None = None
    """Public address behind NAT (``external_signaling/media_address``); None: no NAT."""
    media_address: str | None = None
    """Fixed address RTP binds to and announces (avoids Asterisk's own-IP lookups)."""
    carrier_match: tuple[str, ...] = ()
    """Source addresses / networks of the inbound carrier(s): their calls reach our DIDs."""
    pstn_contact: str | None = Field(default=None, pattern=r"^sips?:[^\s]+$")
    """SIP URI of the PSTN carrier trunk for calls to phone numbers (``sip:host:port``)."""
    rtp_start: int = Field(default=10000, ge=1024, le=65535)
    rtp_end: int = Field(default=20000, ge=1024, le=65535)
    strict_rtp: bool = True
    ami_permit: tuple[str, ...] = ("127.0.0.1/255.255.255.255",)
    """Networks allowed to log in to AMI (``permit=``), when AMI is enabled."""
    bench: bool = False
    """Add the benchmark's dialplan-only carrier and context (test beds only)."""

    @model_validator(mode="after")
    def _check(self) -> AsteriskSettings:
        if self.rtp_end <= self.rtp_start:
            raise ValueError("rtp_end must be above rtp_start")
        return self


def provisioning_settings(settings: Any) -> ProvisioningSettings:
    """``settings.provisioning`` when the main Settings has it, else the defaults."""
    part = getattr(settings, "provisioning", None)
    return part if isinstance(part, ProvisioningSettings) else ProvisioningSettings()
