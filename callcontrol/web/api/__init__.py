"""The operator/customer HTTP API: ``add_api_routes(app)`` adds it to the app.

Routes come from one table (each module's ``ROUTES``), which also builds
``/openapi.json``; ``/docs`` renders that spec for people. Every answer under
``/api/`` that is not a success is the JSON error body of ``errors.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from callcontrol.keys import SESSIONS, SETTINGS
from callcontrol.notify.mailer import Mailer, SmtpMailer
from callcontrol.services.numbers import NumberService
from callcontrol.web.api import (
    accounts,
    forwarding,
    media,
    numbers,
    privacy,
    sip_accounts,
    statistics,
    voicemail,
)
from callcontrol.web.api.config import (
    API_SETTINGS,
    NUMBER_SERVICE,
    SIP_ACCOUNTS_CHANGED,
    ApiSettings,
    SipAccountsChanged,
    ignore_sip_changes,
)
from callcontrol.web.api.endpoint import Route, handler_for
from callcontrol.web.api.errors import api_errors
from callcontrol.web.api.openapi import add_spec_routes

__all__ = ["ApiSettings", "SipAccountsChanged", "add_api_routes", "all_routes"]


def all_routes() -> list[Route]:
    modules = (accounts, numbers, forwarding, media, voicemail, sip_accounts, statistics, privacy)
    return [route for module in modules for route in module.ROUTES]


def _number_service(mailer: Mailer | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[NUMBER_SERVICE] = NumberService(
            sessions=app[SESSIONS], mailer=mailer or SmtpMailer(app[SETTINGS].smtp)
        )
        yield

    return ctx


def add_api_routes(
    app: web.Application,
    *,
    settings: ApiSettings | None = None,
    sip_accounts_changed: SipAccountsChanged = ignore_sip_changes,
    mailer: Mailer | None = None,
) -> None:
    """Add the API to ``app`` (after the database ``cleanup_ctx``, which it uses)."""
    app[API_SETTINGS] = settings or ApiSettings()
    app[SIP_ACCOUNTS_CHANGED] = sip_accounts_changed
    app.cleanup_ctx.append(_number_service(mailer))
    app.middlewares.append(api_errors)
    routes = all_routes()
    for route in routes:
        app.router.add_route(route.method, route.path, handler_for(route))
    add_spec_routes(app, routes)
