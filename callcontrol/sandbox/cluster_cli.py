"""``callcontrol cluster render|up|down|status|call-rate``.

``render --out DIR`` writes the edge's files (``DIR/kamailio/``) and each
node's Asterisk files (``DIR/<node>/``) from ``settings.cluster`` and the
engine's own settings, for a real deployment; ``up``/``down``/``status`` run
the same configuration on loopback (``callcontrol/sandbox/cluster.py``) under
the machine-wide Asterisk lock, refusing at once while someone else holds it.
``call-rate [N]`` shows (and with N sets, without a restart) the edge's
admission limit and what it shed, through ``kamcmd`` on the edge's control
socket (``settings.cluster.run_dir``, or the sandbox's with ``--sandbox``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from callcontrol.sandbox import cluster as sandbox_cluster
from callcontrol.sandbox import cluster_edge
from callcontrol.sandbox.config import SandboxConfig
from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.layout import project_dir
from callcontrol.sandbox.lock import sandbox_lock
from callcontrol.settings import Settings, SettingsError, load_settings
from provisioning.asterisk_config import (
    AsteriskConfigError,
    AsteriskPlan,
    ProjectSources,
    render_asterisk_config,
)
from provisioning.kamailio_config import (
    ADMITTED_COUNTER,
    RATE_VARIABLE,
    SHED_COUNTER,
    call_rate_rpcs,
    node_app,
    node_asterisk_plan,
    render_kamailio_config,
)

Handler = Callable[[argparse.Namespace], int]
SECRET_FILES = ("ari.conf", "manager.conf")


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = subparsers.add_parser(
        "cluster", help="a Kamailio edge in front of several Asterisk nodes (docs/cluster.md)"
    )
    verbs = group.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    render = verbs.add_parser("render", help="write the edge's and every node's configuration")
    render.add_argument("--out", type=Path, required=True, help="folder to write into")
    render.set_defaults(handler=_guarded(_render))
    verbs.add_parser("up", help="start the loopback cluster: the edge and every node").set_defaults(
        handler=_guarded(_locked(_up))
    )
    verbs.add_parser("down", help="stop the edge and every node, unmount").set_defaults(
        handler=_guarded(_locked(_down))
    )
    verbs.add_parser("status", help="show what runs").set_defaults(handler=_guarded(_status))
    rate = verbs.add_parser(
        "call-rate", help="show or set (at run time) the new calls/s the edge admits"
    )
    rate.add_argument("limit", type=int, nargs="?", help="calls/s for the whole edge; 0 = none")
    rate.add_argument("--sandbox", action="store_true", help="the loopback cluster's edge")
    rate.set_defaults(handler=_guarded(_call_rate))


def rendered_cluster(settings: Settings) -> dict[str, dict[str, str]]:
    """Folder name → {file name → text}: ``kamailio`` and one folder per node."""
    base = AsteriskPlan.from_settings(settings)
    sources = ProjectSources.read(project_dir())
    folders = {"kamailio": render_kamailio_config(settings.cluster)}
    for node in settings.cluster.nodes:
        plan = node_asterisk_plan(base, settings.cluster, node)
        folders[node.name] = render_asterisk_config(plan, sources)
    return folders


def _render(args: argparse.Namespace, settings: Settings) -> int:
    out: Path = args.out
    for folder, files in rendered_cluster(settings).items():
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = target / name
            path.write_text(text, encoding="utf-8")
            os.chmod(path, 0o640 if name in SECRET_FILES else 0o644)
        print(f"{target}: {', '.join(sorted(files))}")
    return 0


def _guarded(run: Callable[[argparse.Namespace, Settings], int]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args, load_settings())
        except (SandboxError, SettingsError, AsteriskConfigError, OSError) as exc:
            print(f"cluster: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 2

    return handler


def _locked(
    run: Callable[[argparse.Namespace, Settings], int],
) -> Callable[[argparse.Namespace, Settings], int]:
    def locked(args: argparse.Namespace, settings: Settings) -> int:
        with sandbox_lock():
            return run(args, settings)

    return locked


def _base_config(settings: Settings) -> SandboxConfig:
    return SandboxConfig.from_settings(settings.ari, settings.ami, settings.provisioning)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    layout = sandbox_cluster.ClusterLayout.default()
    running = sandbox_cluster.up(layout, settings.cluster, _base_config(settings))
    cluster = settings.cluster
    print(f"edge: kamailio pid {running.edge_pid} at {cluster.edge_uri}")
    for name, node in running.nodes.items():
        print(
            f"{name}: asterisk {node.asterisk_version} pid {node.pid}, ARI at {node.ari_base_url}, "
            f"app {node_app(settings.ari.app, cluster.node(name))}"
        )
    print(f"media: {layout.media}")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    layout = sandbox_cluster.ClusterLayout.default()
    sandbox_cluster.down(layout, settings.cluster)
    left = sandbox_cluster.leftovers(layout, settings.cluster)
    if left:
        print(f"cluster: left behind: {', '.join(left)}", file=sys.stderr)
        return 1
    print("edge and nodes stopped, mounts removed")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    layout = sandbox_cluster.ClusterLayout.default()
    print(sandbox_cluster.status(layout, settings.cluster, _base_config(settings)))
    return 0


def _edge_folder(args: argparse.Namespace, settings: Settings) -> Path:
    if args.sandbox:
        return sandbox_cluster.ClusterLayout.default().edge_dir
    return Path(settings.cluster.run_dir)


def _call_rate(args: argparse.Namespace, settings: Settings) -> int:
    folder = _edge_folder(args, settings)
    if args.limit is not None:
        if args.limit < 0:
            print("cluster: the call rate is 0 (no limit) or more", file=sys.stderr)
            return 2
        for command in call_rate_rpcs(args.limit):
            cluster_edge.rpc(folder, " ".join(command))
    print(edge_admission(folder))
    return 0


def edge_admission(folder: Path) -> str:
    """The edge's limit and counters, one line (``kamcmd`` answers, parsed)."""
    limit = cluster_edge.rpc(folder, f"pv.shvGet {RATE_VARIABLE}")
    value = limit.split("value:")[-1].split()[0] if "value:" in limit else "?"
    counters = cluster_edge.edge_counters(folder)
    shown = "none" if value == "0" else f"{value} calls/s"
    return (
        f"edge admission limit: {shown}; shed {counters.get(SHED_COUNTER, 0)}, "
        f"admitted {counters.get(ADMITTED_COUNTER, 0)} since start"
    )
