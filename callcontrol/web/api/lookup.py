"""Loading the objects a caller names, scoped to what the caller may see.

Every load filters by owner in the query itself (never load then compare), and
an object of another account is reported exactly as a missing one: 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import (
    Account,
    LedgerEntry,
    MediaFile,
    Number,
    SipAccount,
    VoicemailMessage,
)
from callcontrol.domain.billing import next_charge_date
from callcontrol.domain.vocabulary import LedgerKind, NumberState
from callcontrol.services.callerid import held_dids
from callcontrol.web.api.auth import Caller
from callcontrol.web.api.errors import NotFound
from callcontrol.web.api.schemas import AccountOut, NumberOut, SipAccountOut

_BILLED = (NumberState.ACTIVE, NumberState.SUSPENDED)


async def account(session: AsyncSession, caller: Caller, account_id: int) -> Account:
    found = await session.get(Account, caller.scope(account_id))
    if found is None:
        raise NotFound(f"account {account_id} not found")
    return found


def _number_visible(caller: Caller) -> sa.ColumnElement[bool]:
    if caller.is_operator:
        return sa.true()
    return sa.or_(
        Number.account_id == caller.account_id, Number.test_account_id == caller.account_id
    )


async def number(session: AsyncSession, caller: Caller, did: str) -> Number:
    found = await session.scalar(
        sa.select(Number).where(Number.e164 == did, _number_visible(caller))
    )
    if found is None:
        raise NotFound(f"number {did} not found")
    return found


async def owned_number(session: AsyncSession, caller: Caller, did: str) -> Number:
    """A number the caller's account holds (a lent test number is not enough)."""
    found = await number(session, caller, did)
    if found.account_id is None or not caller.may_see(found.account_id):
        raise NotFound(f"number {did} not found")
    return found


async def media(session: AsyncSession, caller: Caller, media_id: int) -> MediaFile:
    found = await session.get(MediaFile, media_id)
    if found is None or not caller.may_see(found.account_id):
        raise NotFound(f"media file {media_id} not found")
    return found


async def voicemail(session: AsyncSession, caller: Caller, message_id: int) -> VoicemailMessage:
    found = await session.get(VoicemailMessage, message_id)
    if found is None or not caller.may_see(found.account_id):
        raise NotFound(f"voicemail message {message_id} not found")
    return found


async def sip_account(session: AsyncSession, caller: Caller, sip_account_id: int) -> SipAccount:
    found = await session.get(SipAccount, sip_account_id)
    if found is None or not caller.may_see(found.account_id):
        raise NotFound(f"SIP account {sip_account_id} not found")
    return found


def number_out(
    row: Number, today: datetime | None = None, last_charged: date | None = None
) -> NumberOut:
    """``last_charged``: the period billing charged last (``last_charged_periods``);
    the next charge date follows it, whatever today's date is."""
    day = (today or datetime.now(UTC)).date()
    next_charge = None
    if row.activated_on is not None and row.state in _BILLED:
        after = (
            last_charged if last_charged is not None and last_charged >= row.activated_on else day
        )
        next_charge = next_charge_date(row.activated_on, after)
    fields = {
        name: getattr(row, name) for name in NumberOut.model_fields if name != "next_charge_date"
    }
    return NumberOut(**fields, next_charge_date=next_charge)


async def last_charged_periods(session: AsyncSession, rows: Iterable[Number]) -> dict[int, date]:
    """Per number: the latest monthly period billing has charged its current owner."""
    held = [(r.id, r.account_id) for r in rows if r.account_id is not None]
    if not held:
        return {}
    found = await session.execute(
        sa.select(
            LedgerEntry.number_id, LedgerEntry.account_id, sa.func.max(LedgerEntry.period_start)
        )
        .where(
            LedgerEntry.kind == LedgerKind.MONTHLY_FEE,
            LedgerEntry.number_id.in_([n for n, _ in held]),
        )
        .group_by(LedgerEntry.number_id, LedgerEntry.account_id)
    )
    owners = dict(held)
    return {
        number_id: period
        for number_id, account_id, period in found
        if number_id is not None and period is not None and owners.get(number_id) == account_id
    }


async def number_outs(session: AsyncSession, rows: Iterable[Number]) -> list[NumberOut]:
    """Numbers as answered, each next charge date after what billing charged."""
    numbers = list(rows)
    charged = await last_charged_periods(session, numbers)
    return [number_out(n, last_charged=charged.get(n.id)) for n in numbers]


async def one_number_out(session: AsyncSession, row: Number) -> NumberOut:
    return (await number_outs(session, [row]))[0]


async def account_outs(session: AsyncSession, rows: Iterable[Account]) -> list[AccountOut]:
    """Accounts as answered, each with the DID of its default presented number."""
    accounts = list(rows)
    dids = await held_dids(session, [(a.id, a.callerid_number_id) for a in accounts])
    return [
        AccountOut(**_columns(row, AccountOut), presented_number=did)
        for row, did in zip(accounts, dids, strict=True)
    ]


async def account_out(session: AsyncSession, row: Account) -> AccountOut:
    return (await account_outs(session, [row]))[0]


async def sip_account_outs(
    session: AsyncSession, rows: Iterable[SipAccount]
) -> list[SipAccountOut]:
    """SIP accounts as answered, each with the DID of the number it presents itself."""
    sips = list(rows)
    dids = await held_dids(session, [(s.account_id, s.presented_number_id) for s in sips])
    return [
        SipAccountOut(**_columns(row, SipAccountOut), presented_number=did)
        for row, did in zip(sips, dids, strict=True)
    ]


async def sip_account_out(session: AsyncSession, row: SipAccount) -> SipAccountOut:
    return (await sip_account_outs(session, [row]))[0]


def _columns(row: object, model: type[AccountOut | SipAccountOut]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in model.model_fields if name != "presented_number"}
