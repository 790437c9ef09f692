"""The Asterisk configuration the sandbox installs.

The project's ``asterisk-conf/*`` and ``dialplan/*`` files become the whole
``/etc/asterisk`` of the chroot (the package's own files are kept once as
``/etc/asterisk.dist`` for reference). The few values that come from settings
are written in the files as ``{{NAME}}`` placeholders (a syntax Asterisk never
uses, unlike ``${...}``); a placeholder without a value is an error, so a typo
cannot reach Asterisk silently.
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
from callcontrol.settings import AmiSettings, AriSettings
from provisioning.settings import ProvisioningSettings

_PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_]+)\}\}")
CONFIG_DIRS = ("asterisk-conf", "dialplan")
# Installed only with a realtime database: SIP accounts read from PostgreSQL.
REALTIME_DIR = "asterisk-conf/realtime"
REALTIME_FILES = {
    "extconfig.conf": "extconfig.conf",
    "sorcery.conf": "sorcery.conf",
    "res_pgsql.conf": "res_pgsql.conf.template",
    "modules_realtime.conf": "modules_realtime.conf",
}


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
    # provisioning.realtime_url when SIP accounts live in PostgreSQL (backend=realtime).
    realtime_url: str | None = None

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
        return {
            "ARI_USERNAME": self.ari_username,
            "ARI_PASSWORD": self.ari_password,
            "ARI_APP": self.ari_app,
            "HTTP_HOST": self.http_host,
            "HTTP_PORT": str(self.http_port),
            "AMI_USERNAME": self.ami_username,
            "AMI_PASSWORD": self.ami_password,
            "AMI_HOST": self.ami_host,
            "AMI_PORT": str(self.ami_port),
        } | self._realtime_placeholders()

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
    """File name → rendered text of every file in ``asterisk-conf/`` and ``dialplan/``."""
    base = source_root if source_root is not None else project_dir()
    values = config.placeholders()
    files: dict[str, str] = {}
    for folder in CONFIG_DIRS:
        for path in sorted((base / folder).glob("*.conf")):
            if path.name in files:
                raise SandboxError(f"{path.name} exists in more than one of {CONFIG_DIRS}")
            files[path.name] = render(path.read_text(encoding="utf-8"), values, source=str(path))
    if "asterisk.conf" not in files:
        raise SandboxError(f"no asterisk.conf under {base / 'asterisk-conf'}")
    if config.realtime_url is not None:
        for name, source in REALTIME_FILES.items():
            path = base / REALTIME_DIR / source
            files[name] = render(path.read_text(encoding="utf-8"), values, source=str(path))
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
