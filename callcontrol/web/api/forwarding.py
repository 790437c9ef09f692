"""Forwarding of a number: the mode and up to two destinations, each checked.

Rules kept here (each wrong value is named in a 422 with its field path):
- ``sip_uri``: ``sip:user@host[:port]`` at another provider (host a DNS name or
  an address, IPv6 in brackets; port 1..65535);
- ``ip``: the customer's own server by address: ``192.0.2.7``, ``192.0.2.7:5061``
  or ``sip:100@192.0.2.7:5061`` (the host must be an IP address, not a name);
- ``pstn``: a valid E.164 number (``callerid.parse_e164``), stored as ``+digits``;
- ``sip_account``: one of the number's account's own SIP logins;
- ring timeout 5..120 s (the schema bounds it).
Targets are stored normalised; the call path trusts them.
"""

from __future__ import annotations

import ipaddress
import re

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import ForwardingDestination, ForwardingRule, Number, SipAccount
from callcontrol.domain.callerid import parse_e164
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import DestinationType, ForwardingMode
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import Detail, Unprocessable
from callcontrol.web.api.schemas import DestinationIn, DestinationOut, ForwardingIn, ForwardingOut

TAG = "forwarding"
_USER = r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/]+"
_SIP = re.compile(
    rf"^sip:(?P<user>{_USER})@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\[\]/\s]+)(?::(?P<port>[0-9]{{1,5}}))?$",
    re.I,
)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_BARE_IP = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[0-9.]+|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)(?::(?P<port>[0-9]{1,5}))?$"
)


def _port(raw: str | None) -> str:
    if raw is None:
        return ""
    if not 1 <= int(raw) <= 65535:
        raise InvalidInput(f"port {raw} is outside 1..65535")
    return f":{int(raw)}"


def _address(host: str) -> str:
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise InvalidInput(f"{host!r} is not an IP address") from None
    if address.version == 6 and not bracketed and ":" in host:
        return f"[{address.compressed}]"
    return f"[{address.compressed}]" if address.version == 6 else str(address)


def check_sip_uri(target: str) -> str:
    match = _SIP.match(target.strip())
    if match is None:
        raise InvalidInput(f"{target!r} is not a SIP URI: expected sip:user@host[:port]")
    host = match["host"]
    if host.startswith("[") or host.replace(".", "").isdigit():
        host = _address(host)
    elif not _HOSTNAME.match(host):
        raise InvalidInput(f"{host!r} is not a host name or IP address")
    return f"sip:{match['user']}@{host.lower()}{_port(match['port'])}"


def check_ip(target: str) -> str:
    text = target.strip()
    if text.lower().startswith("sip:"):
        match = _SIP.match(text)
        if match is None:
            raise InvalidInput(f"{target!r} is not sip:user@address[:port]")
        return f"sip:{match['user']}@{_address(match['host'])}{_port(match['port'])}"
    bare = _BARE_IP.match(text)
    if bare is not None and text.count(":") > 1 and not text.startswith("["):
        return _address(text)  # a bare IPv6 address: a port needs brackets
    if bare is None:
        raise InvalidInput(
            f"{target!r} is not an IP address: expected e.g. 192.0.2.7, 192.0.2.7:5061 "
            "or sip:100@192.0.2.7:5061"
        )
    return _address(bare["host"]) + _port(bare["port"])


async def check_target(
    session: AsyncSession, account_id: int, kind: DestinationType, target: str
) -> str:
    """The normalised target, or ``InvalidInput`` saying what is wrong."""
    if kind is DestinationType.SIP_URI:
        return check_sip_uri(target)
    if kind is DestinationType.IP:
        return check_ip(target)
    if kind is DestinationType.PSTN:
        return parse_e164(target).e164
    login = await session.scalar(
        sa.select(SipAccount.login).where(
            SipAccount.account_id == account_id, SipAccount.login == target
        )
    )
    if login is None:
        raise InvalidInput(f"{target!r} is not one of this account's SIP accounts")
    return login


async def check_destination(
    session: AsyncSession, account_id: int, dest: DestinationIn, field: str
) -> str:
    try:
        return await check_target(session, account_id, dest.type, dest.target)
    except InvalidInput as exc:
        detail: Detail = {"field": f"{field}.target", "message": str(exc)}
        raise Unprocessable(f"{field}.target: {exc}", [detail]) from None


async def _checked(session: AsyncSession, account_id: int, body: ForwardingIn) -> list[str]:
    targets, details = [], []
    for i, dest in enumerate(body.destinations):
        try:
            targets.append(await check_target(session, account_id, dest.type, dest.target))
        except InvalidInput as exc:
            details.append({"field": f"body.destinations.{i}.target", "message": str(exc)})
    if details:
        raise Unprocessable("some destinations are not valid", details)
    return targets


async def _out(session: AsyncSession, number: Number) -> ForwardingOut:
    rule = await session.get(ForwardingRule, number.id)
    rows = await session.scalars(
        sa.select(ForwardingDestination)
        .where(ForwardingDestination.number_id == number.id)
        .order_by(ForwardingDestination.position)
    )
    dests = [
        DestinationOut(
            position=d.position, type=d.type, target=d.target, timeout_s=d.ring_timeout_s
        )
        for d in rows
    ]
    mode = rule.mode if rule is not None else ForwardingMode.SIMULTANEOUS
    return ForwardingOut(did=number.e164, mode=mode, destinations=dests)


async def get_forwarding(call: ApiCall) -> ForwardingOut:
    async with call.sessions() as session:
        return await _out(session, await lookup.owned_number(session, call.caller, call.did()))


async def put_forwarding(call: ApiCall) -> ForwardingOut:
    body = call.body_as(ForwardingIn)
    async with call.sessions() as session, session.begin():
        number = await lookup.owned_number(session, call.caller, call.did())
        assert number.account_id is not None
        targets = await _checked(session, number.account_id, body)
        await session.execute(
            sa.delete(ForwardingDestination).where(ForwardingDestination.number_id == number.id)
        )
        rule = await session.get(ForwardingRule, number.id)
        if rule is None:
            session.add(ForwardingRule(number_id=number.id, mode=body.mode))
        else:
            rule.mode = body.mode
        for position, (dest, target) in enumerate(zip(body.destinations, targets, strict=True), 1):
            session.add(ForwardingDestination(
                number_id=number.id, position=position, type=dest.type, target=target,
                ring_timeout_s=dest.timeout_s,
            ))  # fmt: skip
        await session.flush()
        return await _out(session, number)


PATH = "/api/v1/numbers/{did}/forwarding"
ROUTES = [
    Route("GET", PATH, get_forwarding, "The number's forwarding", TAG, response=ForwardingOut),
    Route("PUT", PATH, put_forwarding, "Set mode and up to two destinations", TAG,
          body=ForwardingIn, response=ForwardingOut),
]  # fmt: skip
