"""``callcontrol asterisk-config render --out DIR [--check]``.

``render`` writes the files of ``provisioning/asterisk_config.py`` for the
settings' address plan (ari.conf and manager.conf readable by their owner and
group only); ``--check`` compares the Asterisk the settings point at with them
and names each difference (exit 1 when something differs). Known failures are
one line and exit 2, like every ``callcontrol`` command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from callcontrol.settings import Settings, load_settings
from provisioning.asterisk_check import check_ami, check_ari
from provisioning.asterisk_config import (
    AsteriskConfigError,
    AsteriskPlan,
    ProjectSources,
    render_asterisk_config,
)

SECRET_FILES = ("ari.conf", "manager.conf")


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    config = subparsers.add_parser(
        "asterisk-config", help="the Asterisk configuration the engine needs, from settings"
    )
    verbs = config.add_subparsers(dest="asterisk_config_command", required=True, metavar="ACTION")
    render = verbs.add_parser("render", help="write the files; or --check a running Asterisk")
    render.add_argument("--out", type=Path, help="folder to write the files into")
    render.add_argument(
        "--check",
        action="store_true",
        help="compare the running Asterisk (ARI, and AMI when enabled) with the rendered files",
    )
    render.set_defaults(handler=_render)


def rendered(settings: Settings) -> tuple[AsteriskPlan, dict[str, str]]:
    plan = AsteriskPlan.from_settings(settings)
    sources = _sources()
    try:
        return plan, render_asterisk_config(plan, sources)
    except AsteriskConfigError as exc:
        raise SystemExit(_fail(str(exc))) from exc


def _sources() -> ProjectSources:
    try:
        return ProjectSources.packaged()
    except OSError as exc:  # a broken installation (or a checkout without its symlinks)
        raise SystemExit(
            _fail(f"the packaged dialplan and modules.conf are needed to render: {exc}")
        ) from exc


def _fail(message: str) -> int:
    print(f"callcontrol: {message}", file=sys.stderr)
    return 2


def _render(args: argparse.Namespace) -> int:
    if args.out is None and not args.check:
        return _fail("asterisk-config render needs --out DIR, --check, or both")
    settings = load_settings()
    plan, files = rendered(settings)
    if args.out is not None:
        write_files(args.out, files)
        print(f"wrote {', '.join(sorted(files))} to {args.out}")
    if args.check:
        differences = asyncio.run(check_running(settings, plan))
        for line in differences:
            print(f"differs: {line}")
        if differences:
            return 1
        print("the running Asterisk matches the rendered configuration")
    return 0


def write_files(folder: Path, files: dict[str, str]) -> None:
    if not folder.is_dir():
        raise SystemExit(_fail(f"--out {folder}: no such folder (create it first)"))
    for name, text in files.items():
        path = folder / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o640 if name in SECRET_FILES else 0o644)
        os.replace(tmp, path)


async def check_running(settings: Settings, plan: AsteriskPlan) -> list[str]:
    base_url = str(settings.ari.url).rstrip("/")
    differences = await check_ari(plan, base_url)
    if differences or not settings.ami.enabled:
        return differences
    from provisioning.ami import AmiClient, AmiError

    ami = AmiClient(settings.ami, timeout_s=5.0)
    try:
        return await check_ami(plan, ami.command)
    except AmiError as exc:
        return [f"manager.conf: {exc}"]
    finally:
        await ami.close()
