"""Mounts the chroot needs: /proc, /dev and the media folder.

Rules: mounting is idempotent (an existing mount point is left as it is);
unmounting removes every mount under the root, deepest first, and checks
``/proc/self/mountinfo`` afterwards, so ``down`` can promise "no mounts left".
Nothing here deletes files.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from callcontrol.sandbox.errors import SandboxError

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_points() -> list[Path]:
    """All mount points of this mount namespace."""
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return [Path(_unescape(line.split()[4])) for line in info if line.strip()]


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first."""
    root = root.resolve()
    found = [p for p in mount_points() if p == root or root in p.parents]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mounted(path: Path) -> bool:
    return path.resolve() in mount_points()


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SandboxError(f"{' '.join(args)} failed: {done.stderr.strip() or done.returncode}")


def mount_proc(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if not is_mounted(target):
        _run(["mount", "-t", "proc", "proc", str(target)])


def bind_mount(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if not is_mounted(target):
        _run(["mount", "--bind", str(source), str(target)])


def unmount_all_under(root: Path) -> None:
    """Unmount everything under ``root``; lazily if a mount is busy. Raise if any stay."""
    for point in mounts_under(root):
        done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    left = mounts_under(root)
    if left:
        raise SandboxError(f"could not unmount: {', '.join(map(str, left))}")
