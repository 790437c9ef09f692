"""The sandbox's four verbs: build, up, down, status.

``up`` is idempotent: when Asterisk already runs with the same rendered
configuration and media folder it does nothing; when either changed it stops
Asterisk, reinstalls and starts again (modules.conf and pjsip transports do not
reload reliably, so a restart is the only honest way to apply them). ``up``
never leaves mounts or a process behind when it fails. ``down`` stops every
Asterisk of this chroot and removes every mount under it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callcontrol.sandbox import config as conf
from callcontrol.sandbox import mounts, process, rootfs
from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.layout import RUNTIME_DIRS, SandboxLayout

DEFAULT_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Running:
    pid: int
    asterisk_version: str
    ari_base_url: str
    started: bool  # False when ``up`` found it already running with this config


@dataclass(frozen=True)
class SandboxStatus:
    root: Path
    built_version: str | None
    pid: int | None
    ari_version: str | None
    mounts: tuple[Path, ...]

    def describe(self) -> str:
        return "\n".join(
            [
                f"root:     {self.root}",
                f"built:    {self.built_version or 'no'}",
                f"asterisk: {f'running, pid {self.pid}' if self.pid else 'stopped'}",
                f"ari:      {self.ari_version or 'not answering'}",
                f"mounts:   {', '.join(map(str, self.mounts)) or 'none'}",
            ]
        )


def build(layout: SandboxLayout, *, force: bool = False) -> str:
    """Make sure the chroot exists (rebuild it with ``force``); return ``asterisk -V``."""
    if force:
        if process.asterisk_pids(layout):
            raise SandboxError("asterisk is running in the sandbox; run `sandbox down` first")
        return rootfs.rebuild(layout)
    return rootfs.ensure_built(layout)


def up(
    layout: SandboxLayout,
    config: conf.SandboxConfig,
    media_dir: Path | None = None,
    *,
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    source_root: Path | None = None,
) -> Running:
    """Build if needed, install the configuration, mount, start; wait until ARI answers."""
    rootfs.ensure_built(layout)
    files = conf.rendered_files(config, source_root)
    media = media_dir.resolve() if media_dir is not None else None
    fingerprint = conf.fingerprint(files, str(media))
    state = process.running_state(layout)
    if state is not None and state.fingerprint == fingerprint:
        info = process.ari_info(config)
        if info is not None:
            return Running(state.pid, _version(info), config.ari_base_url, started=False)
    down(layout)
    try:
        _prepare(layout, files, media)
        state = process.start(layout, fingerprint)
        info = process.wait_for_ari(layout, config, state.pid, start_timeout_s)
    except BaseException:
        _cleanup_after_failed_start(layout)
        raise
    return Running(state.pid, _version(info), config.ari_base_url, started=True)


def down(layout: SandboxLayout, *, timeout_s: float = 10.0) -> None:
    """Stop Asterisk (if running) and unmount everything under the root."""
    for pid in process.asterisk_pids(layout):
        process.stop(layout, pid, timeout_s)
    process.forget(layout)
    if layout.root.exists():
        mounts.unmount_all_under(layout.root)


def status(layout: SandboxLayout, config: conf.SandboxConfig) -> SandboxStatus:
    pids = process.asterisk_pids(layout)
    info = process.ari_info(config) if pids else None
    return SandboxStatus(
        root=layout.root,
        built_version=rootfs.built_version(layout),
        pid=pids[0] if pids else None,
        ari_version=_version(info) if info else None,
        mounts=tuple(mounts.mounts_under(layout.root)) if layout.root.exists() else (),
    )


def _prepare(layout: SandboxLayout, files: dict[str, str], media: Path | None) -> None:
    for folder in RUNTIME_DIRS:
        layout.inside(folder).mkdir(parents=True, exist_ok=True)
    _install_hosts(layout)
    conf.install(layout, files)
    mounts.mount_proc(layout.inside("/proc"))
    mounts.bind_mount(Path("/dev"), layout.inside("/dev"))
    layout.media_mount.mkdir(parents=True, exist_ok=True)
    if media is not None:
        media.mkdir(parents=True, exist_ok=True)
        mounts.bind_mount(media, layout.media_mount)


def _install_hosts(layout: SandboxLayout) -> None:
    """The host's /etc/hosts, plus the host name if it lacks it.

    Without it Asterisk resolves its host name on every call; with no network
    those lookups stall PJSIP's few threads (see docs/ASTERISK_FACTS).
    """
    try:
        hosts = Path("/etc/hosts").read_text(encoding="utf-8")
    except OSError:
        hosts = "127.0.0.1\tlocalhost\n"
    name = socket.gethostname()
    if name and name not in hosts.split():
        hosts = hosts.rstrip("\n") + f"\n127.0.1.1\t{name}\n"
    layout.inside("/etc/hosts").write_text(hosts, encoding="utf-8")


def _cleanup_after_failed_start(layout: SandboxLayout) -> None:
    try:
        down(layout)
    except SandboxError:
        pass


def _version(info: dict[str, Any]) -> str:
    system = info.get("system")
    version = system.get("version") if isinstance(system, dict) else None
    return str(version) if version else "unknown"
