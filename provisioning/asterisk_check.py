"""Compare a running Asterisk with the configuration rendered for it.

Rules this module keeps:
- Read only: ARI ``GET /asterisk/info`` and ``GET /endpoints``, and over AMI
  (when the plan has it) the CLI's ``dialplan show`` and ``pjsip show`` through
  ``Action: Command``. Nothing is changed in Asterisk.
- Every difference is one line naming the file that decides it, so a person
  knows what to install; an empty list means "matches".
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from callcontrol.domain.contract import INBOUND_CONTEXT, OUTBOUND_CONTEXT
from provisioning.asterisk_config import CARRIER_ENDPOINT, TRANSPORT, AsteriskPlan


def basic_auth(username: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


AmiCommand = Callable[[str], Awaitable[str]]
"""Runs one Asterisk CLI command over AMI and returns its output."""


async def ari_get(
    session: aiohttp.ClientSession, plan: AsteriskPlan, path: str, base_url: str
) -> tuple[int, Any]:
    """``GET {base_url}/ari{path}`` with the plan's credentials → (status, JSON or None)."""
    headers = {"Authorization": basic_auth(plan.ari_username, plan.ari_password)}
    timeout = aiohttp.ClientTimeout(total=5)
    async with session.get(f"{base_url}/ari{path}", headers=headers, timeout=timeout) as response:
        body = await response.json() if response.status == 200 else None
        return response.status, body


async def check_ari(plan: AsteriskPlan, base_url: str) -> list[str]:
    """Differences visible over ARI (http.conf, ari.conf, pjsip.conf endpoints)."""
    async with aiohttp.ClientSession() as session:
        try:
            status, _info = await ari_get(session, plan, "/asterisk/info", base_url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return [f"http.conf: no ARI at {base_url} ({exc.__class__.__name__}: {exc})"]
        if status == 401:
            return [f"ari.conf: user {plan.ari_username!r} with this password is refused (401)"]
        if status != 200:
            return [f"http.conf/ari.conf: GET /ari/asterisk/info answered {status}"]
        status, endpoints = await ari_get(session, plan, "/endpoints", base_url)
    if status != 200 or not isinstance(endpoints, list):
        return [f"modules.conf: GET /ari/endpoints answered {status} (res_ari_endpoints loaded?)"]
    present = {e.get("resource") for e in endpoints if e.get("technology") == "PJSIP"}
    return [
        f"pjsip.conf: endpoint {name!r} is missing"
        for name in plan.endpoints
        if name not in present
    ]


async def check_ami(plan: AsteriskPlan, command: AmiCommand) -> list[str]:
    """Differences visible over AMI: the dialplan contexts, carrier addresses, transport."""
    differences: list[str] = []
    for context, direction in ((INBOUND_CONTEXT, "inbound"), (OUTBOUND_CONTEXT, "outbound")):
        output = await command(f"dialplan show {context}")
        if f"Stasis({plan.app},{direction}" not in output:
            differences.append(
                f"extensions_callcontrol.conf: context {context} does not send calls to "
                f"Stasis({plan.app},{direction},...)"
            )
    identify = await command(f"pjsip show identify {CARRIER_ENDPOINT}-identify")
    for match in plan.address.carrier_match:
        address = match.split("/", 1)[0]
        if address not in identify:
            differences.append(f"pjsip.conf: carrier address {match} is not matched")
    transport = await command(f"pjsip show transport {TRANSPORT}")
    if plan.address.sip_bind not in transport:
        differences.append(
            f"pjsip.conf: transport {TRANSPORT} is not bound to {plan.address.sip_bind}"
        )
    return differences
