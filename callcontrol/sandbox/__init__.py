"""A real Asterisk 22 for development and end-to-end tests, without Docker.

Asterisk runs from a Debian sid root folder (``chroot``) on the host's network:
ARI on 127.0.0.1:8088, PJSIP on udp 127.0.0.1:5060, AMI on 127.0.0.1:5038. The
configuration comes from the project's ``asterisk-conf/`` and ``dialplan/``.
A host media folder is bind-mounted at ``/srv/callcontrol/media`` inside the
chroot, so the engine must run with ``media.asterisk_root=/srv/callcontrol/media``.
"""

from callcontrol.sandbox.config import SandboxConfig
from callcontrol.sandbox.control import Running, SandboxStatus, build, down, status, up
from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.layout import MEDIA_MOUNT_POINT, SandboxLayout
from callcontrol.sandbox.process import cli

__all__ = [
    "MEDIA_MOUNT_POINT",
    "Running",
    "SandboxConfig",
    "SandboxError",
    "SandboxLayout",
    "SandboxStatus",
    "build",
    "cli",
    "down",
    "status",
    "up",
]
