"""Forwarding of a number: the mode and up to two destinations, each checked.

The syntax and the abuse rules of targets are the domain's
(``domain/destinations.py``: private, loopback, link-local, multicast addresses,
the provider's own services and own DIDs are refused with the rule named);
``services/destinations.check_target`` applies them with what only the
database knows. Each wrong value is a 422 naming its field path
(``body.destinations.1.target``); ring timeout 5..120 s (the schema bounds it).
Targets are stored normalised; the call path checks them again.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Number
from callcontrol.domain.destinations import DestinationPolicy
from callcontrol.domain.errors import InvalidInput
from callcontrol.repositories.forwarding import forwarding_of, replace_forwarding
from callcontrol.services.destinations import check_target
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import Detail, Unprocessable
from callcontrol.web.api.schemas import DestinationIn, DestinationOut, ForwardingIn, ForwardingOut

TAG = "forwarding"


async def check_destination(
    session: AsyncSession,
    policy: DestinationPolicy,
    account_id: int,
    dest: DestinationIn,
    field: str,
) -> str:
    try:
        return await check_target(session, policy, account_id, dest.type, dest.target)
    except InvalidInput as exc:
        detail: Detail = {"field": f"{field}.target", "message": str(exc)}
        raise Unprocessable(f"{field}.target: {exc}", [detail]) from None


async def _checked(
    session: AsyncSession, policy: DestinationPolicy, account_id: int, body: ForwardingIn
) -> list[str]:
    targets, details = [], []
    for i, dest in enumerate(body.destinations):
        try:
            targets.append(await check_target(session, policy, account_id, dest.type, dest.target))
        except InvalidInput as exc:
            details.append({"field": f"body.destinations.{i}.target", "message": str(exc)})
    if details:
        raise Unprocessable("some destinations are not valid", details)
    return targets


async def _out(session: AsyncSession, number: Number) -> ForwardingOut:
    mode, rows = await forwarding_of(session, number.id)
    dests = [
        DestinationOut(
            position=d.position, type=d.type, target=d.target, timeout_s=d.ring_timeout_s
        )
        for d in rows
    ]
    return ForwardingOut(did=number.e164, mode=mode, destinations=dests)


async def get_forwarding(call: ApiCall) -> ForwardingOut:
    async with call.sessions() as session:
        return await _out(session, await lookup.owned_number(session, call.caller, call.did()))


async def put_forwarding(call: ApiCall) -> ForwardingOut:
    body = call.body_as(ForwardingIn)
    async with call.sessions() as session, session.begin():
        number = await lookup.owned_number(session, call.caller, call.did())
        assert number.account_id is not None
        targets = await _checked(session, call.destinations, number.account_id, body)
        rows = [(d.type, t, d.timeout_s) for d, t in zip(body.destinations, targets, strict=True)]
        await replace_forwarding(session, number.id, body.mode, rows)
        return await _out(session, number)


PATH = "/api/v1/numbers/{did}/forwarding"
ROUTES = [
    Route("GET", PATH, get_forwarding, "The number's forwarding", TAG, response=ForwardingOut),
    Route("PUT", PATH, put_forwarding, "Set mode and up to two destinations", TAG,
          body=ForwardingIn, response=ForwardingOut),
]  # fmt: skip
