"""The operator/customer HTTP API: ``add_api_routes(app)`` adds it to the app.

Routes come from one table (each module's ``ROUTES``), which also builds
``/openapi.json``; ``/docs`` renders that spec for people. Every answer under
``/api/`` that is not a success is the JSON error body of ``errors.py``.

The API builds none of its collaborators: the composition root
(``callcontrol/app.py``) opens the one ``ProvisioningService`` (SIP accounts),
the ``NumberService`` (on the service's one mailer) and the destination policy,
and hands them over under the ``AppKey``s of ``config.py``; a start-up check
refuses to serve without them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

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

__all__ = ["ApiSettings", "SipAccountProvisioner", "add_api_routes", "all_routes"]


def all_routes() -> list[Route]:
    modules = (
        accounts, numbers, forwarding, media, voicemail, sip_accounts, callerid, statistics,
        privacy, payments, documents, reminders,
        tokens, inventory, rates, money, end_user_documents,
    )  # fmt: skip
    return [route for module in modules for route in module.ROUTES]


COLLABORATORS: dict[str, web.AppKey[Any]] = {
    "PROVISIONER": PROVISIONER,
    "NUMBER_SERVICE": NUMBER_SERVICE,
    "DESTINATION_POLICY": DESTINATION_POLICY,
}


async def _require_collaborators(app: web.Application) -> None:
    """Runs after every ``cleanup_ctx`` has opened: the root must have wired them."""
    missing = [name for name, key in COLLABORATORS.items() if key not in app]
    if missing:
        raise RuntimeError(f"the API needs {', '.join(missing)} from the composition root")


def add_api_routes(app: web.Application, *, settings: ApiSettings | None = None) -> None:
    """Add the API's routes, error middleware and spec to ``app``. Its services
    (``PROVISIONER``, ``NUMBER_SERVICE``, ``DESTINATION_POLICY``) are the
    composition root's to put there before the app serves."""
    app[API_SETTINGS] = settings or ApiSettings()
    app.on_startup.append(_require_collaborators)
    app.middlewares.append(api_errors)
    routes = all_routes()
    for route in routes:
        app.router.add_route(route.method, route.path, handler_for(route))
    add_spec_routes(app, routes)
