"""Where the sandbox lives on the host and inside the chroot.

The chroot is a Debian sid root folder holding Asterisk 22 (Debian 12 has no
Asterisk package). Its location is ``$CALLCONTROL_SANDBOX_ROOT`` or
``~/.cache/callcontrol/asterisk-root``. Everything the sandbox writes at run time
(PID state, logs) lives inside that folder, so two roots never share state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "CALLCONTROL_SANDBOX_ROOT"
#: Where the host media folder appears inside the chroot. Set
#: ``media.asterisk_root`` (``CALLCONTROL_MEDIA__ASTERISK_ROOT``) to this value.
MEDIA_MOUNT_POINT = "/srv/callcontrol/media"
#: Written inside a finished chroot; holds ``asterisk -V``. No marker = not usable.
MARKER_NAME = ".callcontrol-sandbox-built"
#: Folders Asterisk needs inside the chroot (the Debian paths of asterisk.conf).
RUNTIME_DIRS = (
    "var/lib/asterisk",
    "var/run/asterisk",
    "var/log/asterisk",
    "var/spool/asterisk",
    "var/spool/asterisk/recording",
    "var/spool/asterisk/tmp",
)


def default_root() -> Path:
    configured = os.environ.get(ROOT_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "callcontrol" / "asterisk-root"


def project_dir() -> Path:
    """The source tree holding ``asterisk-conf/`` and ``dialplan/``."""
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SandboxLayout:
    root: Path

    @classmethod
    def default(cls) -> SandboxLayout:
        return cls(default_root())

    def inside(self, chroot_path: str) -> Path:
        """The host path of ``chroot_path`` (an absolute path as Asterisk sees it)."""
        return self.root / chroot_path.lstrip("/")

    @property
    def marker(self) -> Path:
        return self.root / MARKER_NAME

    @property
    def etc_asterisk(self) -> Path:
        return self.inside("/etc/asterisk")

    @property
    def state_file(self) -> Path:
        return self.inside("/run/callcontrol-sandbox.json")

    @property
    def console_log(self) -> Path:
        """Asterisk's stdout/stderr (``asterisk -f``)."""
        return self.inside("/var/log/asterisk/console.log")

    @property
    def messages_log(self) -> Path:
        return self.inside("/var/log/asterisk/messages.log")

    @property
    def media_mount(self) -> Path:
        return self.inside(MEDIA_MOUNT_POINT)

    @property
    def recordings(self) -> Path:
        return self.inside("/var/spool/asterisk/recording")
