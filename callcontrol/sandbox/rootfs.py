"""Building the Debian sid root folder that holds Asterisk 22.

Rules: a root is usable only when its marker file exists (written last, holding
``asterisk -V``); a build goes into a temporary folder next to the root and is
renamed into place only after it worked, so a half-built folder is never used.
A folder is only ever deleted after every mount under it is gone, and with
``rm --one-file-system`` so a forgotten bind mount of /dev can never be emptied.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import TextIO

from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.layout import MARKER_NAME, SandboxLayout
from callcontrol.sandbox.mounts import mounts_under, unmount_all_under

MIRROR_ENV = "CALLCONTROL_SANDBOX_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "sid"
PACKAGES = ("asterisk", "asterisk-modules", "asterisk-core-sounds-en-wav")
BUILD_TIMEOUT_S = 1800.0


def built_version(layout: SandboxLayout) -> str | None:
    """The ``asterisk -V`` recorded by a finished build, or None if not built."""
    try:
        return layout.marker.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def ensure_built(layout: SandboxLayout, *, mirror: str | None = None) -> str:
    """Build the root unless a finished one exists; return its Asterisk version."""
    version = built_version(layout)
    if version is not None:
        return version
    return rebuild(layout, mirror=mirror)


def rebuild(layout: SandboxLayout, *, mirror: str | None = None) -> str:
    """Build a fresh root next to the old one, then swap it in."""
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed (apt-get install debootstrap)")
    root = layout.root
    root.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{root.name}.build-", dir=root.parent))
    try:
        _debootstrap(temp, mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR)
        version = _asterisk_version(temp)
        (temp / MARKER_NAME).write_text(version + "\n", encoding="utf-8")
        if root.exists():
            remove_tree(root)
        temp.rename(root)
    except BaseException:
        remove_tree(temp)
        raise
    return version


def _debootstrap(target: Path, mirror: str) -> None:
    args = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        mirror,
    ]
    returncode, tail = run_showing_progress(args, timeout_s=BUILD_TIMEOUT_S)
    if returncode != 0:
        raise SandboxError(f"debootstrap failed ({returncode}):\n" + "\n".join(tail))


def run_showing_progress(
    args: list[str], *, timeout_s: float, progress: TextIO | None = None
) -> tuple[int, list[str]]:
    """Run ``args``; show debootstrap's ``I:`` lines as they come (a build takes
    a minute or more); return the exit code and the last 20 lines of output."""
    out = progress if progress is not None else sys.stderr
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip())
                if line.startswith("I: "):
                    print(f"sandbox build: {line[3:].rstrip()}", file=out, flush=True)
            returncode = proc.wait()
        finally:
            timer.cancel()
    if returncode == -9:
        raise SandboxError(f"debootstrap took longer than {timeout_s:.0f} s")
    return returncode, list(tail)


def _asterisk_version(root: Path) -> str:
    done = subprocess.run(
        ["chroot", str(root), "asterisk", "-V"], capture_output=True, text=True, check=False
    )
    version = done.stdout.strip()
    if done.returncode != 0 or not version.startswith("Asterisk"):
        raise SandboxError(f"no working asterisk in the new root: {done.stderr.strip()}")
    return version


def remove_tree(path: Path) -> None:
    """Delete a root folder, never crossing into a mount."""
    if not path.exists():
        return
    unmount_all_under(path)
    if mounts_under(path):
        raise SandboxError(f"refusing to delete {path}: still has mounts")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
