"""The operator/customer HTTP API: ``add_api_routes(app)`` adds it to the app.

Routes come from one table (each module's ``ROUTES``), which also builds
``/openapi.json``; ``/docs`` renders that spec for people. Every answer under
``/api/`` that is not a success is the JSON error body of ``errors.py``.

SIP accounts are provisioned by ``provisioning.service.ProvisioningService``,
opened here on the app's settings and sessions unless one is passed in: there
is one implementation of creating, re-keying and deleting them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from callcontrol.keys import SESSIONS, SETTINGS
from callcontrol.notify.mailer import Mailer, SmtpMailer
from callcontrol.services.destinations import destination_policy
from callcontrol.services.numbers import NumberService
from callcontrol.web.api import (
    accounts,
    callerid,
    documents,
    end_user_documents,
    forwarding,
    inventory,
    media,
    money,
    numbers,
    payments,
    privacy,
    rates,
    reminders,
    sip_accounts,
    statistics,
    tokens,
    voicemail,
)
from callcontrol.web.api.config import (
    API_SETTINGS,
    DESTINATION_POLICY,
    NUMBER_SERVICE,
    PROVISIONER,
    ApiSettings,
    SipAccountProvisioner,
)
from callcontrol.web.api.endpoint import Route, handler_for
from callcontrol.web.api.errors import api_errors
from callcontrol.web.api.openapi import add_spec_routes
from provisioning.ami import AmiClient
from provisioning.service import open_provisioning

__all__ = ["ApiSettings", "SipAccountProvisioner", "add_api_routes", "all_routes"]


def all_routes() -> list[Route]:
    modules = (
        accounts, numbers, forwarding, media, voicemail, sip_accounts, callerid, statistics,
        privacy, payments, documents, reminders,
        tokens, inventory, rates, money, end_user_documents,
    )  # fmt: skip
    return [route for module in modules for route in module.ROUTES]


def _number_service(mailer: Mailer | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[NUMBER_SERVICE] = NumberService(
            sessions=app[SESSIONS], mailer=mailer or SmtpMailer(app[SETTINGS].smtp)
        )
        yield

    return ctx


async def _provisioning(app: web.Application) -> AsyncIterator[None]:
    """The SIP account provisioner of ``Settings.provisioning``; AMI reloads if enabled."""
    settings = app[SETTINGS]
    part = settings.provisioning
    ami = AmiClient(settings.ami, timeout_s=part.ami_timeout_s) if settings.ami.enabled else None
    try:
        async with open_provisioning(part, app[SESSIONS], reloader=ami) as service:
            app[PROVISIONER] = service
            yield
    finally:
        if ami is not None:
            await ami.close()


def add_api_routes(
    app: web.Application,
    *,
    settings: ApiSettings | None = None,
    provisioner: SipAccountProvisioner | None = None,
    mailer: Mailer | None = None,
) -> None:
    """Add the API to ``app`` (after the database ``cleanup_ctx``, which it uses).

    Without ``provisioner`` a ``ProvisioningService`` is opened at start-up (and
    its pending reload flushed at shutdown); pass one to share it or to test.
    """
    app[API_SETTINGS] = settings or ApiSettings()
    app[DESTINATION_POLICY] = destination_policy(app[SETTINGS])
    if provisioner is None:
        app.cleanup_ctx.append(_provisioning)
    else:
        app[PROVISIONER] = provisioner
    app.cleanup_ctx.append(_number_service(mailer))
    app.middlewares.append(api_errors)
    routes = all_routes()
    for route in routes:
        app.router.add_route(route.method, route.path, handler_for(route))
    add_spec_routes(app, routes)
