"""``callcontrol provision sync`` and ``callcontrol sip-account create|reset|delete``.

``add_cli`` registers the sub-commands on the main parser; every leaf sets
``handler`` (``Callable[[argparse.Namespace], int]``). Settings are read with
``load_settings()`` when a command runs; the provisioning part is
``settings.provisioning`` when the main Settings has it, else the defaults.
AMI is used for the reload when ``settings.ami.enabled``.

A password is printed once, by ``create`` and ``reset``, and never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from callcontrol.domain.errors import DomainError
from callcontrol.settings import SettingsError, load_settings
from provisioning.service import ProvisioningError, ProvisioningService
from provisioning.settings import provisioning_settings

Handler = Callable[[argparse.Namespace], int]
Work = Callable[[ProvisioningService, argparse.Namespace], Awaitable[str]]


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    provision = subparsers.add_parser("provision", help="make Asterisk's SIP accounts match the DB")
    verbs = provision.add_subparsers(dest="provision_command", required=True, metavar="ACTION")
    verbs.add_parser("sync", help="rebuild Asterisk's SIP accounts; print what changed")
    verbs.choices["sync"].set_defaults(handler=_handler(_sync))

    accounts = subparsers.add_parser("sip-account", help="customers' SIP accounts")
    actions = accounts.add_subparsers(dest="sip_account_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="new SIP account; prints its password once")
    create.add_argument("--account", type=int, required=True, help="the customer account id")
    create.add_argument("--login", required=True)
    create.add_argument("--domain", default=None, help="default: provisioning.sip_domain")
    create.set_defaults(handler=_handler(_create))
    reset = actions.add_parser("reset", help="new password; prints it once")
    reset.add_argument("--login", required=True)
    reset.set_defaults(handler=_handler(_reset))
    delete = actions.add_parser("delete", help="remove the SIP account")
    delete.add_argument("--login", required=True)
    delete.set_defaults(handler=_handler(_delete))


def _handler(work: Work) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        try:
            print(asyncio.run(_run(work, args)))
            return 0
        except (DomainError, ProvisioningError, SettingsError) as exc:
            print(f"callcontrol: {exc}", file=sys.stderr)
            return 2

    return handler


async def _run(work: Work, args: argparse.Namespace) -> str:
    from callcontrol.db.engine import create_engine, session_factory
    from provisioning.reloaders import open_reloader
    from provisioning.service import open_provisioning

    settings = load_settings()
    part = provisioning_settings(settings)
    engine = create_engine(settings.database, pooled=False)
    try:
        async with open_reloader(settings) as reloader:
            async with open_provisioning(part, session_factory(engine), reloader=reloader) as svc:
                return await work(svc, args)
    finally:
        await engine.dispose()


async def _sync(service: ProvisioningService, args: argparse.Namespace) -> str:
    return (await service.sync()).summary()


async def _create(service: ProvisioningService, args: argparse.Namespace) -> str:
    row, password = await service.create_sip_account(args.account, args.login, args.domain)
    return _credentials(row.login, row.domain, password)


async def _reset(service: ProvisioningService, args: argparse.Namespace) -> str:
    row, password = await service.reset_password(args.login)
    return _credentials(row.login, row.domain, password)


async def _delete(service: ProvisioningService, args: argparse.Namespace) -> str:
    await service.delete_sip_account(args.login)
    return f"SIP account {args.login} deleted"


def _credentials(login: str, domain: str, password: str) -> str:
    return (
        f"login:    {login}\ndomain:   {domain}\npassword: {password}\n"
        "(the password is shown only now; it is not stored)"
    )
