"""Cancelling an order: a refund within 2 working days of the service being provided.

The order is the number's latest activation (bought or given back); the moment
is that transition's audit row. Refunded: its setup fee and its first month,
each as a ``refund`` entry keyed ``refund:<charge entry id>`` (exactly once).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import sqlalchemy as sa

from callcontrol.db import ledger
from callcontrol.db.models import LedgerEntry, Number, NumberEvent
from callcontrol.domain.billing import monthly_charge_key, refund_allowed
from callcontrol.domain.vocabulary import LedgerKind, NumberState
from callcontrol.services.errors import RefundRefused
from callcontrol.services.transitions import Work, rebalance


async def refund_latest_order(work: Work, number: Number, *, tz: str | None = None) -> int:
    """Refund the locked number's latest order; return the amount refunded."""
    owner = number.account_id
    ordered_at = await work.session.scalar(
        sa.select(NumberEvent.at)
        .where(
            NumberEvent.number_id == number.id,
            NumberEvent.to_state == NumberState.ACTIVE,
            NumberEvent.from_state.in_((NumberState.PENDING, NumberState.DISCONNECTED)),
        )
        .order_by(NumberEvent.at.desc(), NumberEvent.id.desc())
        .limit(1)
    )
    if owner is None or ordered_at is None or number.activated_on is None:
        raise RefundRefused(f"number {number.e164} has no order to cancel")
    if not refund_allowed(ordered_at, work.now, ZoneInfo(tz) if tz else None):
        raise RefundRefused(
            f"the order of {number.e164} was provided on {ordered_at.isoformat()}: "
            "more than 2 working days ago"
        )
    refunded = 0
    for charge in await _order_charges(work, number, owner):
        await ledger.post(
            work.session, account_id=owner, kind=LedgerKind.REFUND,
            amount_minor=-charge.amount_minor, currency=charge.currency, number_id=number.id,
            idempotency_key=f"refund:{charge.id}", description=f"refund of {charge.description}",
        )  # fmt: skip
        refunded -= charge.amount_minor
    return refunded


async def _order_charges(work: Work, number: Number, owner: int) -> list[LedgerEntry]:
    assert number.activated_on is not None
    ours = sa.and_(LedgerEntry.number_id == number.id, LedgerEntry.account_id == owner)
    setup = await work.session.scalar(
        sa.select(LedgerEntry)
        .where(ours, LedgerEntry.kind == LedgerKind.SETUP_FEE)
        .order_by(LedgerEntry.id.desc())
        .limit(1)
    )
    first_month = await work.session.scalar(
        sa.select(LedgerEntry).where(
            ours, LedgerEntry.idempotency_key == monthly_charge_key(number.id, number.activated_on)
        )
    )
    return [entry for entry in (setup, first_month) if entry is not None]


async def refund_setup_fee(work: Work, number_id: int, owner: int) -> int:
    """Refund the latest setup fee ``owner`` paid for the number (an order that was
    never activated); return the amount (0 when there was none)."""
    entry = await work.session.scalar(
        sa.select(LedgerEntry)
        .where(
            LedgerEntry.number_id == number_id,
            LedgerEntry.account_id == owner,
            LedgerEntry.kind == LedgerKind.SETUP_FEE,
        )
        .order_by(LedgerEntry.id.desc())
        .limit(1)
    )
    if entry is None:
        return 0
    await ledger.post(
        work.session, account_id=owner, kind=LedgerKind.REFUND, amount_minor=-entry.amount_minor,
        currency=entry.currency, number_id=number_id, idempotency_key=f"refund:{entry.id}",
        description=f"refund of {entry.description} (activation refused)",
    )  # fmt: skip
    await rebalance(work, owner)
    return -entry.amount_minor
