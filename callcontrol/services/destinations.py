"""Checking a forwarding target against the account and the provider's rules.

The rules are ``domain/destinations.py`` (pure); this module builds their
policy from the settings and answers the two questions only the database
knows: is a ``sip_account`` target one of the account's logins, and is a PSTN
target one of our own DIDs. The API calls ``check_target`` when a target is
set; the call path (``repositories/numbers.py``) asks the same policy again.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Number, SipAccount
from callcontrol.domain.destinations import (
    DestinationPolicy,
    normalise_target,
    policy_endpoints,
)
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import DestinationType
from callcontrol.settings import Settings


def destination_policy(settings: Settings) -> DestinationPolicy:
    """The abuse rules as this deployment configures them."""
    part = settings.forwarding
    ari = urlsplit(str(settings.ari.url))
    pairs = [(ari.hostname or "", ari.port or (443 if ari.scheme == "https" else 80))]
    pairs.append((settings.ami.host, settings.ami.port))
    for text in part.asterisk_sip:
        host, _, port = text.rpartition(":")
        pairs.append((host, int(port)) if port.isdigit() else (text, 5060))
    domains = {d.lower() for d in part.own_domains}
    sip_domain = settings.provisioning.sip_domain.lower()
    if not policy_endpoints([(sip_domain, 5060)]):
        domains.add(sip_domain)  # a name, not an address
    return DestinationPolicy(
        allowed_networks=tuple(part.allowed_networks),
        own_endpoints=policy_endpoints(pairs),
        own_domains=frozenset(domains),
    )


async def is_own_did(session: AsyncSession, e164: str) -> bool:
    found = await session.scalar(sa.select(Number.id).where(Number.e164 == e164).limit(1))
    return found is not None


async def check_target(
    session: AsyncSession,
    policy: DestinationPolicy,
    account_id: int,
    kind: DestinationType,
    target: str,
) -> str:
    """The normalised target, or ``InvalidInput`` (``DestinationRefused``) saying why not."""
    if kind is DestinationType.SIP_ACCOUNT:
        login = await session.scalar(
            sa.select(SipAccount.login).where(
                SipAccount.account_id == account_id, SipAccount.login == target
            )
        )
        if login is None:
            raise InvalidInput(f"{target!r} is not one of this account's SIP accounts")
        return login
    normalised = normalise_target(kind, target)
    own = kind is DestinationType.PSTN and await is_own_did(session, normalised)
    policy.check(kind, normalised, own_number=own)
    return normalised
