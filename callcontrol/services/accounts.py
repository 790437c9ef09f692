"""Account settings the operator negotiates (no money moves here)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Account
from callcontrol.domain.errors import InvalidInput


async def set_volume_discount(session: AsyncSession, account_id: int, pct: int) -> None:
    """The discount on buying 5 or more numbers at once (``billing.bulk_purchase_discount``)."""
    if not 0 <= pct <= 100:
        raise InvalidInput(f"a discount is 0..100 %, not {pct}")
    await session.execute(
        sa.update(Account).where(Account.id == account_id).values(negotiated_bulk_discount_pct=pct)
    )
