"""The ``callcontrol`` command: serve, migrate, seed the demo, run the sandbox.

Settings are loaded (and validated) once here. Every failure a person can act
on - a bad setting, a database URL of the wrong form, an unreachable or
unmigrated database, a missing account - ends the command with one line on
stderr and exit code 2 (``_KNOWN_FAILURES``); a traceback means a bug. Commands
that use the schema check first that the database is at head, so ``serve``
refuses an unmigrated database instead of logging tracebacks. No command prints
a password or a token it did not just create; URLs are shown masked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version

import sqlalchemy.exc

from callcontrol.db.preflight import DatabaseProblem, check_schema, masked, unreachable
from callcontrol.domain.errors import DomainError
from callcontrol.sandbox.errors import SandboxError
from callcontrol.settings import Settings, SettingsError, load_settings

Handler = Callable[[argparse.Namespace], int]

# Commands that read or write the schema: refused, in one line, unless the
# database is reachable and migrated to head.
NEEDS_MIGRATED_DB = frozenset({"serve", "token", "billing", "provision", "sip-account"})


def _known_failures() -> tuple[type[BaseException], ...]:
    from callcontrol.web.api.tokens import TokenError
    from provisioning.service import ProvisioningError

    return (
        SettingsError,
        DatabaseProblem,
        DomainError,
        TokenError,
        ProvisioningError,
        SandboxError,
    )


def _with_settings(run: Callable[[argparse.Namespace, Settings], int]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        return run(args, load_settings())

    return handler


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from callcontrol.app import build_app, new_event_loop
    from callcontrol.logs import configure_logging

    if settings.calls.executor == "agi" and not settings.agi.cdr_folder.is_dir():
        raise SettingsError(
            f"bad setting CALLCONTROL_AGI__CDR_FOLDER={str(settings.agi.cdr_folder)!r}: not a "
            "folder; the FastAGI dialplan leaves each call's report there (Asterisk's "
            "/var/log/asterisk as this engine sees it)"
        )
    configure_logging(settings.log_level, settings.log_format)
    web.run_app(
        build_app(settings),
        loop=new_event_loop(),
        host=settings.http.host,
        port=settings.http.port,
        print=None,
        handle_signals=True,
    )
    return 0


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from callcontrol.db.engine import upgrade

    try:
        asyncio.run(upgrade(settings.database))
    except (OSError, sqlalchemy.exc.DBAPIError) as exc:
        raise unreachable(settings.database.url, exc) from exc
    print(f"database at revision head ({masked(settings.database.url)})")
    return 0


def _demo_seed(args: argparse.Namespace, settings: Settings) -> int:
    from callcontrol.demo import seed_demo

    print(asyncio.run(seed_demo(settings)))
    return 0


def _token_create(args: argparse.Namespace, settings: Settings) -> int:
    from callcontrol.db.engine import create_engine, session_factory
    from callcontrol.web.api.tokens import create_token, expiry

    async def run() -> str:
        engine = create_engine(settings.database, pooled=False)
        try:
            sessions = session_factory(engine)
            extra = {"expires_at": expiry(args.expires_in_days), "label": args.label}
            if args.operator:
                return await create_token(sessions, role="operator", **extra)
            return await create_token(sessions, role="customer", account_id=args.account, **extra)
        finally:
            await engine.dispose()

    print(asyncio.run(run()))
    return 0


def _token_list(args: argparse.Namespace, settings: Settings) -> int:
    """One line per token: id, role, account, state, expiry, label - never a secret."""
    from callcontrol.db.engine import create_engine, session_factory
    from callcontrol.db.types import utcnow
    from callcontrol.repositories.api_tokens import TokenInfo, list_tokens

    async def run() -> list[TokenInfo]:
        engine = create_engine(settings.database, pooled=False)
        try:
            async with session_factory(engine)() as session:
                return await list_tokens(session, account_id=args.account)
        finally:
            await engine.dispose()

    now = utcnow()
    print("id\trole\taccount\tstate\texpires_at\tlabel")
    for t in asyncio.run(run()):
        expired = t.expires_at is not None and t.expires_at <= now
        state = "revoked" if t.revoked_at else "expired" if expired else "active"
        expires = t.expires_at.isoformat() if t.expires_at else "-"
        account = "-" if t.account_id is None else str(t.account_id)
        print(f"{t.id}\t{t.role}\t{account}\t{state}\t{expires}\t{t.label}")
    return 0


def _token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from callcontrol.db.engine import create_engine, session_factory
    from callcontrol.repositories.api_tokens import revoke_by_id

    async def run() -> bool:
        engine = create_engine(settings.database, pooled=False)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await revoke_by_id(session, args.token_id)
        finally:
            await engine.dispose()

    if not asyncio.run(run()):
        print(f"callcontrol: no active token {args.token_id}", file=sys.stderr)
        return 1
    print(f"token {args.token_id} revoked")
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from callcontrol.doctor import run_checks

    findings = asyncio.run(run_checks(settings))
    for finding in findings:
        print(finding.line())
    return 1 if any(f.status == "fail" for f in findings) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callcontrol",
        description="Call-control engine for DID providers running Asterisk (ARI).",
    )
    parser.add_argument(
        "--version", action="version", version=f"callcontrol {version('callcontrol')}"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the ARI app and the HTTP API")
    serve.set_defaults(handler=_with_settings(_serve))
    doctor = commands.add_parser("doctor", help="check everything serve needs; one line each")
    doctor.set_defaults(handler=_with_settings(_doctor))
    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply migrations up to head").set_defaults(
        handler=_with_settings(_db_upgrade)
    )
    demo = commands.add_parser("demo", help="demo data for the local sandbox")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    demo_commands.add_parser("seed", help="create the demo account and number").set_defaults(
        handler=_with_settings(_demo_seed)
    )
    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="print a new API token (shown once)")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--operator", action="store_true", help="an operator token")
    who.add_argument("--account", type=int, help="a customer token for this account")
    create.add_argument(
        "--expires-in-days", type=int, default=None, help="stop working after N days"
    )
    create.add_argument("--label", default="", help="what the token is for (shown by list)")
    create.set_defaults(handler=_with_settings(_token_create))
    listing = token_commands.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--account", type=int, default=None, help="only this account's")
    listing.set_defaults(handler=_with_settings(_token_list))
    revoke = token_commands.add_parser("revoke", help="revoke a token by its id (see list)")
    revoke.add_argument("token_id", type=int)
    revoke.set_defaults(handler=_with_settings(_token_revoke))
    from callcontrol.sandbox.cli import add_cli as add_sandbox
    from callcontrol.sandbox.cluster_cli import add_cli as add_cluster
    from callcontrol.services.cli import add_cli as add_billing
    from callcontrol.services.operator_cli import add_cli as add_operator
    from provisioning.asterisk_cli import add_cli as add_asterisk_config
    from provisioning.cli import add_cli as add_provisioning

    add_sandbox(commands)
    add_provisioning(commands)
    add_billing(commands)
    add_operator(commands)
    add_asterisk_config(commands)
    add_cluster(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = load_settings()  # validate before doing anything
        if args.command in NEEDS_MIGRATED_DB:
            asyncio.run(check_schema(settings.database.url))
        return handler(args)
    except _known_failures() as exc:
        return _fail(str(exc))
    except (OSError, sqlalchemy.exc.DBAPIError) as exc:
        # The database went away (or was never there) in the middle of a command.
        return _fail(str(unreachable(load_settings().database.url, exc)))


def _fail(message: str) -> int:
    print(f"callcontrol: {message.strip().splitlines()[0]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
