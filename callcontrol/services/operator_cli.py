"""``callcontrol inventory import FILE`` and ``callcontrol rates import FILE``: the
operator's bulk imports from a script, with the API's rules (all or nothing,
every bad row printed with its line; exit code 1 and nothing stored)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.inventory import Cell, RowError, csv_rows, parse_rows
from callcontrol.domain.rate_sheet import parse_rate_sheet
from callcontrol.services.inventory import ImportRefused
from callcontrol.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    inventory = subparsers.add_parser("inventory", help="the operator's number inventory")
    verbs = inventory.add_subparsers(dest="inventory_command", required=True, metavar="ACTION")
    imp = verbs.add_parser("import", help="import numbers from a CSV (or .json rows) file")
    imp.add_argument("file", type=Path)
    imp.set_defaults(handler=_inventory_import)
    rates = subparsers.add_parser("rates", help="the PSTN price list")
    rate_verbs = rates.add_subparsers(dest="rates_command", required=True, metavar="ACTION")
    rate_imp = rate_verbs.add_parser("import", help="import a rate sheet (CSV)")
    rate_imp.add_argument("file", type=Path)
    rate_imp.set_defaults(handler=_rates_import)


def _in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from callcontrol.db.engine import create_engine, session_factory

    async def run() -> T:
        engine = create_engine(settings.database, pooled=False)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _refused(errors: list[RowError]) -> int:
    for e in errors:
        print(f"line {e.line}: {e.field}: {e.message}", file=sys.stderr)
    print(f"{len(errors)} bad rows; nothing was imported", file=sys.stderr)
    return 1


def _inventory_import(args: argparse.Namespace) -> int:
    from callcontrol.services.inventory import import_numbers

    try:
        settings = load_settings()
        text = args.file.read_text()
        if args.file.suffix == ".json":
            items: list[dict[str, Cell]] = json.loads(text)
            raw = list(enumerate(items, 1))
        else:
            raw = csv_rows(text)
    except (SettingsError, OSError, ValueError) as exc:
        print(f"inventory: {exc}", file=sys.stderr)
        return 2
    rows, errors = parse_rows(raw)
    try:
        count = _in_session(settings, lambda s: import_numbers(s, rows, errors))
    except ImportRefused as exc:
        return _refused(exc.errors)
    print(f"{count} numbers imported")
    return 0


def _rates_import(args: argparse.Namespace) -> int:
    from callcontrol.services.rates import import_rates

    try:
        settings = load_settings()
        rows, errors = parse_rate_sheet(args.file.read_text())
    except (SettingsError, OSError, InvalidInput) as exc:
        print(f"rates: {exc}", file=sys.stderr)
        return 2
    try:
        done = _in_session(settings, lambda s: import_rates(s, rows, errors))
    except ImportRefused as exc:
        return _refused(exc.errors)
    print(f"{done.added} rates added, {done.updated} updated")
    return 0
