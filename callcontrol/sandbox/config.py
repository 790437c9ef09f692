"""The Asterisk configuration the sandbox installs.

The whole ``/etc/asterisk`` of the chroot (the package's own files are kept
once as ``/etc/asterisk.dist`` for reference) is made of two parts:
- what the engine needs (ari, http, manager, pjsip, rtp, the dialplan,
  modules), rendered by ``provisioning/asterisk_config.py`` - the same renderer
  as ``callcontrol asterisk-config render`` - from the sandbox's own loopback
  test plan (:data:`TEST_PLAN`, README "Loopback address plan"), bench mode on;
- the generic files in ``asterisk-conf/`` (asterisk.conf, logger.conf, ...),
  copied; only the realtime ones carry ``{{NAME}}`` placeholders (a syntax
  Asterisk never uses), and a placeholder without a value is an error.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.layout import SandboxLayout, project_dir
from callcontrol.settings import AmiSettings, AriSettings, CallSettings
from provisioning.asterisk_config import (
    AmiPlan,
    AsteriskConfigError,
    AsteriskPlan,
    ProjectSources,
    render_asterisk_config,
)
from provisioning.settings import AsteriskSettings, ProvisioningSettings

_PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_]+)\}\}")
CONFIG_DIRS = ("asterisk-conf",)
#: The loopback test plan (README): Asterisk 127.0.0.1:5060, carrier callers
#: 127.0.0.2 and the fault prober 127.0.0.7, the PSTN carrier 127.0.0.5:5060,
#: the benchmark's carrier 127.0.0.9 (bench mode), media on 127.0.0.1.
TEST_PLAN = AsteriskSettings(
    sip_bind="127.0.0.1:5060",
    media_address="127.0.0.1",
    carrier_match=("127.0.0.2", "127.0.0.7"),
    pstn_contact="sip:127.0.0.5:5060",
    rtp_start=20000,
    rtp_end=30000,
    strict_rtp=False,
    ami_permit=("127.0.0.0/255.0.0.0",),
    bench=True,
)
# Installed only with a realtime database: SIP accounts read from PostgreSQL.
REALTIME_DIR = "asterisk-conf/realtime"
REALTIME_FILES = {
    "extconfig.conf": "extconfig.conf",
    "sorcery.conf": "sorcery.conf",
    "res_pgsql.conf": "res_pgsql.conf.template",
    "modules_realtime.conf": "modules_realtime.conf",
}

#: Appended to sorcery.conf with ``shared_contacts``: contacts only in realtime.
SHARED_CONTACTS_SORCERY = (
    "; Registered contacts in PostgreSQL: every node of a cluster sees every phone.\n"
    "contact = realtime,ps_contacts\n"
)


@dataclass(frozen=True)
class SandboxConfig:
    """The values of the Asterisk configuration that come from settings."""

    ari_username: str = "callcontrol"
    ari_password: str = "callcontrol"
    ari_app: str = "callcontrol"
    http_host: str = "127.0.0.1"
    http_port: int = 8088
    ami_username: str = "callcontrol"
    ami_password: str = "callcontrol"
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    # AMI on (the tests of the doctor's and the config check's AMI parts, reloads
    # over AMI); off gives the production default (CALLCONTROL_AMI__ENABLED=false):
    # no manager.conf, so the manager takes no channel messages (bench.calls).
    ami: bool = True
    # provisioning.realtime_url when SIP accounts live in PostgreSQL (backend=realtime).
    realtime_url: str | None = None
    # With realtime_url: registered contacts in PostgreSQL too (ps_contacts), so
    # every Asterisk of a cluster sees every phone (docs/cluster.md).
    shared_contacts: bool = False

    @classmethod
    def from_settings(
        cls,
        ari: AriSettings,
        ami: AmiSettings,
        provisioning: ProvisioningSettings | None = None,
    ) -> SandboxConfig:
        realtime_url = None
        if provisioning is not None and provisioning.backend == "realtime":
            assert provisioning.realtime_url is not None  # the settings check it
            realtime_url = provisioning.realtime_url.get_secret_value()
        url = urlsplit(str(ari.url))
        return cls(
            ari_username=ari.username,
            ari_password=ari.password.get_secret_value(),
            ari_app=ari.app,
            http_host=url.hostname or "127.0.0.1",
            http_port=url.port or 8088,
            ami_username=ami.username,
            ami_password=ami.password.get_secret_value(),
            ami_host=ami.host,
            ami_port=ami.port,
            realtime_url=realtime_url,
        )

    @property
    def ari_base_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}/ari"

    def placeholders(self) -> dict[str, str]:
        return self._realtime_placeholders()

    def plan(self) -> AsteriskPlan:
        """The renderer's plan: the test plan, AMI on unless ``ami`` is False."""
        calls = CallSettings()
        return AsteriskPlan(
            app=self.ari_app,
            ari_username=self.ari_username,
            ari_password=self.ari_password,
            http_host=self.http_host,
            http_port=self.http_port,
            realm=ProvisioningSettings().realm,
            pstn_endpoint=calls.pstn_endpoint,
            external_endpoint=calls.external_endpoint,
            address=TEST_PLAN,
            ami=AmiPlan(
                host=self.ami_host,
                port=self.ami_port,
                username=self.ami_username,
                password=self.ami_password,
                permit=TEST_PLAN.ami_permit,
            )
            if self.ami
            else None,
        )

    def _realtime_placeholders(self) -> dict[str, str]:
        if self.realtime_url is None:
            return {}
        url = make_url(self.realtime_url)
        if not url.drivername.startswith("postgresql") or not url.database:
            raise SandboxError("realtime_url must be a postgresql URL with a database name")
        return {
            "PG_HOST": url.host or "127.0.0.1",
            "PG_PORT": str(url.port or 5432),
            "PG_DBNAME": url.database,
            "PG_USER": url.username or "postgres",
            "PG_PASSWORD": url.password or "",
        }


def render(text: str, values: dict[str, str], *, source: str = "<text>") -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise SandboxError(f"{source}: unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(substitute, text)


def rendered_files(config: SandboxConfig, source_root: Path | None = None) -> dict[str, str]:
    """File name → text: the engine's files rendered from the test plan, then the
    generic files of ``asterisk-conf/``."""
    base = source_root if source_root is not None else project_dir()
    values = config.placeholders()
    try:
        files = render_asterisk_config(config.plan(), ProjectSources.read(base))
    except AsteriskConfigError as exc:
        raise SandboxError(str(exc)) from exc
    for folder in CONFIG_DIRS:
        for path in sorted((base / folder).glob("*.conf")):
            if path.name not in files:
                text = path.read_text(encoding="utf-8")
                files[path.name] = render(text, values, source=str(path))
    if "asterisk.conf" not in files:
        raise SandboxError(f"no asterisk.conf under {base / 'asterisk-conf'}")
    if config.realtime_url is not None:
        for name, source in REALTIME_FILES.items():
            path = base / REALTIME_DIR / source
            files[name] = render(path.read_text(encoding="utf-8"), values, source=str(path))
        if config.shared_contacts:
            files["sorcery.conf"] += SHARED_CONTACTS_SORCERY
            files["extconfig.conf"] += f"ps_contacts => pgsql,{values['PG_DBNAME']}\n"
    return files


def fingerprint(files: dict[str, str], *extra: str) -> str:
    """A digest of a configuration, to tell whether a running Asterisk has it."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    for item in extra:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()


def install(layout: SandboxLayout, files: dict[str, str]) -> None:
    """Replace the chroot's /etc/asterisk with exactly ``files``."""
    target = layout.etc_asterisk
    staging = target.with_name("asterisk.new")
    dist = target.with_name("asterisk.dist")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, text in files.items():
        mode = 0o640 if name in ("ari.conf", "manager.conf") else 0o644
        (staging / name).write_text(text, encoding="utf-8")
        (staging / name).chmod(mode)
    if target.exists() and not dist.exists():
        target.rename(dist)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
