"""The one settings object of callcontrol.

Read once at start-up from ``CALLCONTROL_*`` environment variables (nested parts
with ``__``, e.g. ``CALLCONTROL_ARI__URL``) and optionally a TOML file named by
``CALLCONTROL_CONFIG``; validated and frozen. Each component receives only its
own part (``settings.ari``, ``settings.database`` ...), never the whole object.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from provisioning.kamailio_config import ClusterSettings
from provisioning.settings import AmiSettings as AmiSettings  # owned by provisioning
from provisioning.settings import AsteriskSettings, ProvisioningSettings


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AriSettings(_Part):
    url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8088")
    username: str = "callcontrol"
    password: SecretStr = SecretStr("callcontrol")
    app: str = Field(default="callcontrol", pattern=r"^[A-Za-z0-9_.-]+$")
    reconnect_max_backoff_s: float = Field(default=10.0, gt=0)
    lease_ttl_s: float = Field(default=6.0, ge=1.0, le=120.0)
    """One engine per app (``engine/lease.py``): a standby takes over this long
    after the active engine stopped renewing (at once if it died on this host)."""
    replaced_holdoff_s: float = Field(default=60.0, gt=0)
    """After another client took the app without a lease: wait before retaking."""
    watchdog_s: float = Field(default=30.0, ge=1.0)
    """How often the engine reconciles its calls with what Asterisk holds."""


class DatabaseSettings(_Part):
    url: str = "sqlite+aiosqlite:///./var/callcontrol.db"
    echo: bool = False


class SmtpSettings(_Part):
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=1, le=65535)
    sender: str = "voicemail@callcontrol.invalid"
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_s: float = Field(default=10.0, gt=0)


class HttpSettings(_Part):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class MediaSettings(_Part):
    """Where greetings and voicemail live.

    ``root`` is the folder as the engine sees it; ``asterisk_root`` the same folder
    as Asterisk sees it (inside the chroot or container). Asterisk plays
    ``sound:<asterisk_root>/<file without .wav>``.
    """

    root: Path = Path("./var/media")
    asterisk_root: Path | None = None
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=44)

    def asterisk_path(self, relative: str) -> str:
        base = self.asterisk_root if self.asterisk_root is not None else self.root.resolve()
        return str(base / relative)


class DocumentSettings(_Part):
    """End users' documents: kept apart from the media folder (which Asterisk
    reads), never served to another account."""

    root: Path = Path("./var/documents")
    max_bytes: int = Field(default=5 * 1024 * 1024, gt=0)


class CallSettings(_Part):
    """Call-handling knobs that are not per-number data."""

    pstn_endpoint: str = "callcontrol-pstn"
    external_endpoint: str = "callcontrol-external"
    default_ring_timeout_s: int = Field(default=20, ge=5, le=300)
    voicemail_max_seconds: int = Field(default=120, ge=5, le=3600)
    voicemail_max_silence_seconds: int = Field(default=5, ge=1, le=60)
    pstn_low_credit_warning_s: int = Field(default=30, ge=0)
    outbound_ring_timeout_s: int = Field(default=60, ge=5, le=300)
    max_forwarding_hops: int = Field(default=3, ge=1, le=20)
    """An inbound call that has already been forwarded this many times by a
    callcontrol engine (``X-CallControl-Hops``) is refused as a forwarding loop."""
    routing_cache_s: float = Field(default=0.0, ge=0, le=300)
    """0: off. Otherwise a number's last snapshot, if younger than this, is used
    when the database cannot be read (``repositories/routing_cache.py``)."""
    lookup_timeout_ms: int = Field(default=500, ge=10, le=30_000)
    """A routing lookup not answered within this gets 503 (``repositories/breaker.py``)."""
    lookup_retry_after_ms: int = Field(default=1000, ge=10, le=60_000)
    """After a failed lookup, new calls get 503 at once for this long, then one
    lookup tries the database again."""
    # Admission control (engine/admission.py): beyond any of these a new call
    # gets 503 at once, without a database lookup.
    max_active_calls: int = Field(default=2000, ge=1)
    max_ari_in_flight: int = Field(default=150, ge=1)
    max_ari_latency_ms: int = Field(default=1000, ge=1)
    max_stasis_lag_ms: int = Field(default=250, ge=1)
    """New calls reaching the engine this much later than usual (channel created
    -> StasisStart here) mean Asterisk or the engine is saturated: the ceiling
    below falls (not a refusal in the engine by itself)."""
    max_call_rate: float = Field(default=0.0, ge=0)
    """New calls per second let through to Stasis at most (0: no fixed ceiling).
    Beyond it, and while the limits above are exceeded (the ceiling then falls
    below the rate admitted), the dialplan turns the excess away with 503 before
    Stasis (``[callcontrol-admission]``), at no cost to the engine."""
    engine_retries: int = Field(default=2, ge=0, le=10)
    """A new call that finds no engine (Stasis app not registered, FastAGI not
    answering) is offered to it again this many times, a second apart, before
    the dialplan answers 503: an engine restarting takes a couple of seconds.
    Cluster nodes are rendered with ``cluster.node_engine_retries`` (0) instead:
    the edge tries the next node at once."""
    executor: Literal["ari", "agi"] = "ari"
    """Who carries the routing plans out: the ARI engine (Stasis) or Asterisk's
    own dialplan, asked over FastAGI (``settings.agi``; README "Executors")."""


class AgiSettings(_Part):
    """The FastAGI server (``callcontrol/agi``) of ``calls.executor = "agi"``."""

    host: str = "127.0.0.1"
    port: int = Field(default=4573, ge=1, le=65535)
    header_timeout_s: float = Field(default=5.0, gt=0, le=60)
    command_timeout_s: float = Field(default=5.0, gt=0, le=60)
    cdr_folder: Path = Path("/var/log/asterisk")
    """Asterisk's log folder as this engine sees it: the FastAGI dialplan's
    hangup handler appends each call's report to ``callcontrol-agi-<minute>.cdr``
    there, and the engine turns the lines into CDRs (``callcontrol/agi/reports.py``).
    The engine must be able to read, write and remove files in it."""
    cdr_read_every_s: float = Field(default=0.25, gt=0, le=60)
    """How often the report files are read: the most a CDR waits after its call."""
    cdr_keep_s: float = Field(default=60.0, ge=1, le=86_400)
    """A report file read to its end is removed once unchanged this long."""
    push_plans: bool = True
    """Keep each DID's standing plan in Asterisk (AstDB) so that its calls need
    no request (``callcontrol/agi/plan_push.py``); off: every call asks."""
    plans_poll_s: float = Field(default=0.1, gt=0, le=5)
    """How often the database's change log is read: about how long a change
    (a suspension, a new destination) takes to reach the pushed plans."""
    plans_lease_s: float = Field(default=5.0, ge=2, le=60)
    """The longest a pushed plan is used after the engine last vouched for it
    (it stopped, froze, or lost its database): then every call asks again."""


class BillingSettings(_Part):
    grace_days: int = Field(default=30, ge=0)
    reminder_days: int = Field(default=3, ge=0)
    run_at_hour_utc: int = Field(default=3, ge=0, le=23)


class PhoneReminderSettings(_Part):
    """Low-balance reminders by phone (``callcontrol/services/phone_reminders.py``)."""

    enabled: bool = False
    caller_id: str = Field(default="", pattern=r"^(\+[1-9][0-9]{6,14})?$")  # the provider's number
    app_suffix: str = Field(default="-reminders", pattern=r"^[A-Za-z0-9_.-]+$")
    call_from_hour: int = Field(default=9, ge=0, le=23)  # local time of the phone's country
    call_until_hour: int = Field(default=20, ge=1, le=24)  # exclusive
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_after_s: int = Field(default=1800, ge=10)
    ring_timeout_s: int = Field(default=30, ge=5, le=120)
    max_call_s: int = Field(default=120, ge=10, le=600)
    interval_s: float = Field(default=60.0, gt=0)


class PrivacySettings(_Part):
    """How long personal data is kept: CDR caller numbers and voicemail recordings
    older than ``retention_days`` are purged every ``purge_interval_s``."""

    retention_days: int = Field(default=180, ge=1)
    purge_interval_s: float = Field(default=3600.0, gt=0)


class ForwardingSettings(_Part):
    """Abuse rules of forwarding targets (``domain/destinations.py``).

    ``allowed_networks`` lifts the address rules (loopback, private ...) for the
    networks listed: a lab deployment on loopback sets ``["127.0.0.0/8"]``. The
    provider's own services stay refused whatever is allowed: Asterisk's SIP
    (``asterisk_sip``), ARI and AMI (from their settings), and ``own_domains``
    (with ``provisioning.sip_domain``).
    """

    allowed_networks: tuple[IPvAnyNetwork, ...] = ()
    asterisk_sip: tuple[str, ...] = ("127.0.0.1:5060",)
    own_domains: tuple[str, ...] = ()


class QuotaSettings(_Part):
    """Per-account limits on what a customer may store or create."""

    greeting_bytes: int = Field(default=50 * 1024 * 1024, ge=0)
    greetings: int = Field(default=20, ge=0)
    sip_accounts: int = Field(default=20, ge=0)
    numbers: int = Field(default=100, ge=0)
    documents: int = Field(default=20, ge=0)


class SpoolSettings(_Part):
    """The local spool of work the database or the mail server could not take
    (``repositories/spool.py``): its own SQLite file on local disk."""

    path: Path = Path("./var/spool.db")
    db_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """How long a call's task waits for its CDR write before journaling it."""
    retry_min_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=1.0, gt=0)
    """Back-off between replays to the database while it is away."""
    mail_retry_min_s: float = Field(default=5.0, gt=0)
    mail_retry_max_s: float = Field(default=300.0, gt=0)
    """Back-off between sends to the mail server while it fails."""
    max_rejections: int = Field(default=5, ge=1)
    """An entry its target refuses (not an outage) this often is marked dead (kept)."""


Environment = Literal["development", "production", "test"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLCONTROL_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    environment: Environment = "development"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    ari: AriSettings = AriSettings()
    ami: AmiSettings = AmiSettings()
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    http: HttpSettings = HttpSettings()
    media: MediaSettings = MediaSettings()
    documents: DocumentSettings = DocumentSettings()
    calls: CallSettings = CallSettings()
    agi: AgiSettings = AgiSettings()
    billing: BillingSettings = BillingSettings()
    privacy: PrivacySettings = PrivacySettings()
    phone_reminders: PhoneReminderSettings = PhoneReminderSettings()
    spool: SpoolSettings = SpoolSettings()
    provisioning: ProvisioningSettings = ProvisioningSettings()
    forwarding: ForwardingSettings = ForwardingSettings()
    quotas: QuotaSettings = QuotaSettings()
    asterisk: AsteriskSettings = AsteriskSettings()
    cluster: ClusterSettings = ClusterSettings()

    @model_validator(mode="after")
    def _check_reload_via(self) -> Settings:
        if self.provisioning.reload_via == "ami" and not self.ami.enabled:
            raise ValueError(
                "provisioning.reload_via=ami needs CALLCONTROL_AMI__ENABLED=true "
                "(or reload_via=ari / auto: pjsip reloads over the engine's ARI)"
            )
        return self


class SettingsError(Exception):
    """A bad setting; ``str()`` is one line naming the setting."""


def _env_name(loc: tuple[int | str, ...]) -> str:
    return "CALLCONTROL_" + "__".join(str(p).upper() for p in loc)


def load_settings(**overrides: Any) -> Settings:
    """Load and validate settings; raise SettingsError with a one-line message."""
    file_values: dict[str, Any] = {}
    config_path = os.environ.get("CALLCONTROL_CONFIG")
    if config_path:
        try:
            file_values = tomllib.loads(Path(config_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"CALLCONTROL_CONFIG={config_path}: {exc}") from exc
    try:
        return Settings(**{**file_values, **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        if not first["loc"]:  # a check across sections: its message names the settings
            message = str(first["msg"]).removeprefix("Value error, ")
            raise SettingsError(f"bad settings: {message}{more}") from exc
        where = _env_name(tuple(first["loc"]))
        shown = "'***'" if _is_secret(first["loc"]) else repr(first.get("input"))
        raise SettingsError(f"bad setting {where}={shown}: {first['msg']}{more}") from exc


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    """A value never shown in an error: passwords, tokens and URLs that may hold one."""
    return any(word in str(part).lower() for part in loc for word in _SECRET_WORDS)


_SECRET_WORDS = ("password", "secret", "token", "url")
