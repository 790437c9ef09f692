"""CallerID settings: which numbers have the CallerID service, and which number an
account (its default) or one of its SIP accounts (an override) presents.

The call path reads these settings (``repositories.sip_accounts``: the SIP
account's number, else the account's, shown only if the account still holds it,
the number has the service and the call goes to the number's own country). This
module is the one place they are written. Rules kept here:

- CallerID is an extra service the provider turns on for a number on request. It
  is turned on only for a voice number an account has bought (pending, active or
  suspended): not for a number in the pool, reserved, lent for a test or
  disconnected, and never for an ``sms-once`` number (it takes no calls, so
  nobody could call it back). Turning it off is always allowed. A number going
  back to the pool loses it (``services.transitions``).
- A presented number must be a voice number the account rents: active or
  suspended (still the customer's, only paused). Another account's number is
  refused exactly like a number that does not exist, so nothing is learnt about
  it. Choosing a number does not turn the service on: until the provider does,
  calls go out anonymous.
- Lock order of ``services.transitions``: the account row, then the number row;
  so a number cannot change hands between the check and the write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Account, Number, SipAccount
from callcontrol.domain.errors import DomainError, InvalidInput
from callcontrol.domain.vocabulary import NumberKind, NumberState
from callcontrol.services.transitions import lock_account, lock_number

log = structlog.get_logger(__name__)

S = NumberState
SERVICE_STATES = frozenset({S.PENDING, S.ACTIVE, S.SUSPENDED})
PRESENTABLE_STATES = frozenset({S.ACTIVE, S.SUSPENDED})


class ServiceRefused(DomainError):
    """The CallerID service cannot be turned on for this number in its state."""

    code: ClassVar[str] = "callerid_service_refused"


class NotPresentable(InvalidInput):
    """The named number cannot be the one an account or SIP account presents."""

    code: ClassVar[str] = "number_not_presentable"


def service_refusal(number: Number) -> str | None:
    """Why the CallerID service may not be turned on for ``number`` (None: it may)."""
    if number.kind is NumberKind.SMS_ONCE:
        return f"{number.e164} is an sms-once number: it takes no calls, so it shows no CallerID"
    if number.account_id is None or number.state not in SERVICE_STATES:
        return (
            f"{number.e164} is {number.state.value}: the CallerID service is for a number "
            "an account has bought (pending, active or suspended)"
        )
    return None


def presentation_refusal(number: Number) -> str | None:
    """Why ``number``, held by the account asking, may not be presented (None: it may)."""
    if number.kind is NumberKind.SMS_ONCE:
        return f"{number.e164} is an sms-once number: it takes no calls and cannot be presented"
    if number.state not in PRESENTABLE_STATES:
        return (
            f"{number.e164} is {number.state.value}: only an active or suspended number "
            "can be presented"
        )
    return None


async def set_service(session: AsyncSession, number_id: int, *, enabled: bool) -> Number:
    """Turn the CallerID service of a number on or off (the operator's decision)."""
    number = await lock_number(session, number_id)
    if enabled:
        refusal = service_refusal(number)
        if refusal is not None:
            raise ServiceRefused(refusal)
    if number.callerid_service != enabled:
        number.callerid_service = enabled
        log.info("callerid_service_changed", did=number.e164, enabled=enabled)
    await session.flush()
    return number


async def _presentable(session: AsyncSession, account_id: int, did: str | None) -> int | None:
    """The id of ``did`` if account ``account_id`` may present it; None for None.

    Locks the account, then the number (the lock order of ``services.transitions``).
    """
    await lock_account(session, account_id)
    if did is None:
        return None
    number_id = await session.scalar(
        sa.select(Number.id).where(Number.e164 == did, Number.account_id == account_id)
    )
    number = await lock_number(session, number_id) if number_id is not None else None
    if number is None or number.account_id != account_id:
        raise NotPresentable(f"account {account_id} has no number {did}")
    refusal = presentation_refusal(number)
    if refusal is not None:
        raise NotPresentable(refusal)
    return number.id


async def choose_account_number(session: AsyncSession, account: Account, did: str | None) -> None:
    """Set (or, with None, clear) the number ``account`` presents by default."""
    account.callerid_number_id = await _presentable(session, account.id, did)
    await session.flush()
    log.info("callerid_account_number_chosen", account_id=account.id, did=did)


async def choose_sip_account_number(
    session: AsyncSession, sip_account: SipAccount, did: str | None
) -> None:
    """Set (or, with None, clear) the number one SIP account presents instead of the default."""
    sip_account.presented_number_id = await _presentable(session, sip_account.account_id, did)
    await session.flush()
    log.info("callerid_sip_account_number_chosen", login=sip_account.login, did=did)


async def held_dids(
    session: AsyncSession, choices: Sequence[tuple[int, int | None]]
) -> list[str | None]:
    """For each ``(account id, chosen number id)``: the number's DID while that account
    still holds it, else None -- the call path's own rule, so what is shown is what
    calls would use."""
    wanted = {number_id for _, number_id in choices if number_id is not None}
    held: dict[int | None, tuple[str, int | None]] = {}
    if wanted:
        rows = await session.execute(
            sa.select(Number.id, Number.e164, Number.account_id).where(Number.id.in_(wanted))
        )
        held = {number_id: (e164, owner) for number_id, e164, owner in rows}
    dids: list[str | None] = []
    for account_id, number_id in choices:
        e164, owner = held.get(number_id, (None, None))
        dids.append(e164 if owner == account_id else None)
    return dids
