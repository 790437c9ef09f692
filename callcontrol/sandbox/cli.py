"""``callcontrol sandbox up|down|status|build``.

``add_cli`` registers the sub-command on the main parser; every leaf sets
``handler`` (``Callable[[argparse.Namespace], int]``) with ``set_defaults``, so
the main CLI runs ``return args.handler(args)``. Settings are read with
``load_settings()`` only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from callcontrol.sandbox import control
from callcontrol.sandbox.config import SandboxConfig
from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.layout import MEDIA_MOUNT_POINT, SandboxLayout
from callcontrol.sandbox.lock import sandbox_lock
from callcontrol.settings import Settings, SettingsError, load_settings

Handler = Callable[[argparse.Namespace], int]


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sandbox = subparsers.add_parser(
        "sandbox", help="run a real Asterisk 22 in a Debian sid chroot for development and tests"
    )
    sandbox.add_argument(
        "--root",
        type=Path,
        default=None,
        help="the chroot (default: $CALLCONTROL_SANDBOX_ROOT "
        "or ~/.cache/callcontrol/asterisk-root)",
    )
    verbs = sandbox.add_subparsers(dest="sandbox_command", required=True)
    up = verbs.add_parser("up", help="build if needed, install config, start, wait for ARI")
    up.add_argument(
        "--media",
        type=Path,
        default=None,
        help=f"host folder to mount at {MEDIA_MOUNT_POINT} (default: media.root)",
    )
    up.add_argument("--timeout", type=float, default=control.DEFAULT_START_TIMEOUT_S)
    up.set_defaults(handler=_guarded(_locked(_up)))
    verbs.add_parser("down", help="stop Asterisk and unmount").set_defaults(
        handler=_guarded(_locked(_down))
    )
    verbs.add_parser("status", help="show what runs").set_defaults(handler=_guarded(_status))
    build = verbs.add_parser("build", help="build the chroot if missing")
    build.add_argument("--force", action="store_true", help="rebuild even if it exists")
    build.set_defaults(handler=_guarded(_build))


def _guarded(run: Callable[[argparse.Namespace, Settings], int]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args, load_settings())
        except (SandboxError, SettingsError) as exc:
            print(f"sandbox: {exc}", file=sys.stderr)
            return 2

    return handler


def _locked(
    run: Callable[[argparse.Namespace, Settings], int],
) -> Callable[[argparse.Namespace, Settings], int]:
    """Starting or stopping the machine's one sandbox Asterisk: under its lock."""

    def locked(args: argparse.Namespace, settings: Settings) -> int:
        with sandbox_lock():
            return run(args, settings)

    return locked


def _layout(args: argparse.Namespace) -> SandboxLayout:
    root: Path | None = args.root
    return SandboxLayout(root.resolve()) if root is not None else SandboxLayout.default()


def _config(settings: Settings) -> SandboxConfig:
    return SandboxConfig.from_settings(settings.ari, settings.ami, settings.provisioning)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    media: Path = args.media if args.media is not None else settings.media.root
    running = control.up(_layout(args), _config(settings), media, start_timeout_s=args.timeout)
    verb = "started" if running.started else "already running"
    print(
        f"asterisk {running.asterisk_version} {verb} (pid {running.pid}), "
        f"ARI at {running.ari_base_url}; media {media.resolve()} at {MEDIA_MOUNT_POINT}"
    )
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    control.down(_layout(args))
    print("asterisk stopped, mounts removed")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    current = control.status(_layout(args), _config(settings))
    print(current.describe())
    return 0 if current.pid is not None and current.ari_version is not None else 3


def _build(args: argparse.Namespace, settings: Settings) -> int:
    print(control.build(_layout(args), force=args.force))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callcontrol.sandbox")
    add_cli(parser.add_subparsers(dest="command", required=True))
    # ``python -m callcontrol.sandbox up`` reads as ``callcontrol sandbox up``.
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    handler: Handler = args.handler
    return handler(args)
