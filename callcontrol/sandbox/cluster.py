"""The local cluster sandbox: a Kamailio edge and N Asterisk nodes on loopback.

Where things live (``HOME`` is the folder of the sandbox chroot,
``~/.cache/callcontrol``):
- ``HOME/asterisk-root-<node>``: one root per node, a copy of the built chroot
  in which every file Asterisk only reads is a hard link (``cp -al``: seconds,
  no disk) and every folder it writes (``etc``, ``var/lib/asterisk``,
  ``var/log``, ``var/spool``, ``var/cache/asterisk``, ``run``, ``tmp``) is a
  real copy. So each node has its own config, astdb, logs, spool and control
  socket, the existing single-node code (``control.up``/``down``, PID checks by
  ``/proc/PID/root``) works per node unchanged, and the single-node sandbox
  root is never touched. (One root with ``asterisk -C`` per node would need a
  second set of paths in every tool that talks to Asterisk; a read-only bind
  would leave mounts to clean.) A node root is remade when the base chroot
  was rebuilt (its marker differs).
- ``HOME/cluster-edge``: Kamailio's rendered files, log, control socket, PID.
- ``HOME/cluster-media``: the media folder, mounted into every node.

Callers hold the machine-wide Asterisk lock (``lock.sandbox_lock`` for the
CLI, ``exclusive_asterisk`` in the tests): ``up`` and ``down`` start and stop
only what they started (PIDs in their state files, checked before a signal).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, fields, replace
from pathlib import Path

from callcontrol.sandbox import cluster_edge as edge
from callcontrol.sandbox import control, mounts, process, rootfs
from callcontrol.sandbox.config import SandboxConfig
from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.layout import MARKER_NAME, SandboxLayout
from provisioning.asterisk_config import AsteriskPlan
from provisioning.kamailio_config import (
    ClusterNode,
    ClusterSettings,
    node_app,
    node_asterisk_plan,
    render_kamailio_config,
)

#: Top-level folders never copied into a node root (mount points, media).
_SKIPPED = ("proc", "dev", "sys", "srv")
#: Folders Asterisk writes: real copies, never hard links shared with the base.
_PRIVATE = (
    "etc",
    "var/lib/asterisk",
    "var/log",
    "var/spool",
    "var/cache/asterisk",
    "run",
    "tmp",
    "root",
)


@dataclass(frozen=True)
class NodeConfig(SandboxConfig):
    """A sandbox configuration whose plan is one cluster node's."""

    node_plan: AsteriskPlan | None = None

    def plan(self) -> AsteriskPlan:
        return self.node_plan if self.node_plan is not None else super().plan()


@dataclass(frozen=True)
class ClusterLayout:
    base: SandboxLayout

    @classmethod
    def default(cls) -> ClusterLayout:
        return cls(SandboxLayout.default())

    @property
    def home(self) -> Path:
        return self.base.root.parent

    def node(self, name: str) -> SandboxLayout:
        return SandboxLayout(self.home / f"asterisk-root-{name}")

    @property
    def edge_dir(self) -> Path:
        return self.home / "cluster-edge"

    @property
    def media(self) -> Path:
        return self.home / "cluster-media"


@dataclass(frozen=True)
class ClusterRunning:
    edge_pid: int
    nodes: dict[str, control.Running]


def sandbox_cluster(cluster: ClusterSettings, layout: ClusterLayout) -> ClusterSettings:
    """The settings with the edge's files and socket in the sandbox's edge folder."""
    folder = str(layout.edge_dir)
    return cluster.model_copy(update={"config_dir": folder, "run_dir": folder})


def node_config(base: SandboxConfig, cluster: ClusterSettings, node: ClusterNode) -> NodeConfig:
    """``base`` (the single sandbox's config) bound to ``node``'s addresses and app."""
    values = {f.name: getattr(base, f.name) for f in fields(SandboxConfig)}
    config = NodeConfig(**values)
    config = replace(
        config,
        ari_app=node_app(base.ari_app, node),
        http_host=node.address,
        http_port=node.http_port,
        ami_host=node.address,
        ami_port=node.ami_port,
        shared_contacts=True,
    )
    return replace(config, node_plan=node_asterisk_plan(base.plan(), cluster, node))


def ensure_node_root(base: SandboxLayout, node: SandboxLayout) -> None:
    """Make ``node`` a private-where-written copy of the built ``base`` root."""
    rootfs.ensure_built(base)
    wanted = base.marker.read_text(encoding="utf-8")
    if node.marker.exists() and node.marker.read_text(encoding="utf-8") == wanted:
        if _same_inode(base.root, node.root):
            return
    if node.root.exists():
        if mounts.mounts_under(node.root):
            raise SandboxError(f"{node.root} has mounts; run `callcontrol cluster down` first")
        shutil.rmtree(node.root)
    staging = node.root.with_name(node.root.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for entry in sorted(base.root.iterdir()):
        if entry.name in _SKIPPED:
            (staging / entry.name).mkdir()
        elif entry.name != MARKER_NAME:
            _copy(entry, staging / entry.name, links=True)
    for private in _PRIVATE:
        source, target = base.root / private, staging / private
        if source.is_dir() and not source.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
            _copy(source, target, links=False)
    (staging / MARKER_NAME).write_text(wanted, encoding="utf-8")
    # The base's run state (its Asterisk's PID) is the base's, never the node's.
    SandboxLayout(staging).state_file.unlink(missing_ok=True)
    staging.rename(node.root)


def _same_inode(base: Path, node: Path) -> bool:
    """The node root still hard-links the base's files (a rebuilt base has new ones)."""
    probe = "usr/sbin/asterisk"
    try:
        return (base / probe).stat().st_ino == (node / probe).stat().st_ino
    except OSError:
        return False


def _copy(source: Path, target: Path, *, links: bool) -> None:
    done = subprocess.run(
        ["cp", "-al" if links else "-a", str(source), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SandboxError(f"copying {source} failed: {done.stderr.strip()[:500]}")


def up(
    layout: ClusterLayout,
    cluster: ClusterSettings,
    base: SandboxConfig,
    *,
    media: Path | None = None,
    start_timeout_s: float = control.DEFAULT_START_TIMEOUT_S,
) -> ClusterRunning:
    """Every node (fresh roots if needed), then the edge; all down again on failure."""
    cluster = sandbox_cluster(cluster, layout)
    media_dir = (media or layout.media).resolve()
    try:
        nodes: dict[str, control.Running] = {}
        for node in cluster.nodes:
            node_layout = layout.node(node.name)
            ensure_node_root(layout.base, node_layout)
            nodes[node.name] = control.up(
                node_layout,
                node_config(base, cluster, node),
                media_dir,
                start_timeout_s=start_timeout_s,
            )
        edge_pid = start_edge(layout, cluster)
    except BaseException:
        down(layout, cluster)
        raise
    return ClusterRunning(edge_pid, nodes)


def start_edge(layout: ClusterLayout, cluster: ClusterSettings) -> int:
    """(Re)start Kamailio with the rendered configuration; wait until it answers."""
    cluster = sandbox_cluster(cluster, layout)
    edge.stop(layout.edge_dir)
    edge.install(layout.edge_dir, render_kamailio_config(cluster))
    edge.check(layout.edge_dir)
    pid = edge.start(layout.edge_dir)
    edge.wait_ready(layout.edge_dir, pid, cluster.edge_address, cluster.edge_port)
    return pid


def down(layout: ClusterLayout, cluster: ClusterSettings) -> None:
    """Stop the edge and every node's Asterisk; unmount; keep the roots for next time."""
    errors: list[str] = []
    try:
        edge.stop(layout.edge_dir)
    except SandboxError as exc:
        errors.append(str(exc))
    for node in cluster.nodes:
        node_layout = layout.node(node.name)
        if node_layout.root.exists():
            try:
                control.down(node_layout)
            except SandboxError as exc:
                errors.append(str(exc))
    if errors:
        raise SandboxError("; ".join(errors))


def status(layout: ClusterLayout, cluster: ClusterSettings, base: SandboxConfig) -> str:
    cluster = sandbox_cluster(cluster, layout)
    pid = edge.running_pid(layout.edge_dir)
    answer = edge.sip_options(cluster.edge_address, cluster.edge_port) if pid else None
    lines = [
        f"edge:     {f'running, pid {pid}' if pid else 'stopped'} "
        f"({cluster.edge_uri}, OPTIONS: {answer or 'no answer'})"
    ]
    for node in cluster.nodes:
        node_layout = layout.node(node.name)
        if not node_layout.root.exists():
            lines.append(f"{node.name}:    no root ({node_layout.root})")
            continue
        state = control.status(node_layout, node_config(base, cluster, node))
        lines.append(
            f"{node.name}:    asterisk {f'running, pid {state.pid}' if state.pid else 'stopped'}, "
            f"ARI {state.ari_version or 'not answering'} at {node.ari_url}, "
            f"mounts {len(state.mounts)}"
        )
    return "\n".join(lines)


def leftovers(layout: ClusterLayout, cluster: ClusterSettings) -> list[str]:
    """What ``down`` must have removed: our processes and mounts (empty when clean)."""
    found: list[str] = []
    found += [f"kamailio pid {pid}" for pid in edge.all_pids(layout.edge_dir)]
    for node in cluster.nodes:
        root = layout.node(node.name).root
        if root.exists():
            found += [f"mount {p}" for p in mounts.mounts_under(root)]
            found += [f"asterisk pid {p}" for p in process.asterisk_pids(layout.node(node.name))]
    return found
