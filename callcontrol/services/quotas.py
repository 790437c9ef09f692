"""Per-account quotas (``settings.quotas``): what one customer may store or hold.

Checked before the thing is created; a customer over its quota gets
``QuotaExceeded`` (409) naming the quota and its size. The operator acting on an
account is not held to them (it may grant more by hand). Counting and creating
are not one locked step: two requests at the same instant may each pass the
last free place; the quotas bound abuse, not billing.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import MediaFile, Number, SipAccount
from callcontrol.domain.vocabulary import NumberState
from callcontrol.services.errors import QuotaExceeded
from callcontrol.settings import QuotaSettings

_HELD = (NumberState.RESERVED, NumberState.PENDING, NumberState.ACTIVE, NumberState.SUSPENDED)


async def check_media(
    session: AsyncSession, quotas: QuotaSettings, account_id: int, adding_bytes: int
) -> None:
    count, size = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(MediaFile.size_bytes), 0))
            .where(MediaFile.account_id == account_id)
        )
    ).one()  # fmt: skip
    if count >= quotas.greetings:
        raise QuotaExceeded(
            f"the account already stores {count} greetings (quota {quotas.greetings})"
        )
    if size + adding_bytes > quotas.greeting_bytes:
        raise QuotaExceeded(
            f"greetings would take {size + adding_bytes} bytes; the account's quota is "
            f"{quotas.greeting_bytes} bytes (delete some first)"
        )


async def check_sip_accounts(session: AsyncSession, quotas: QuotaSettings, account_id: int) -> None:
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(SipAccount)
        .where(SipAccount.account_id == account_id)
    )
    if (count or 0) >= quotas.sip_accounts:
        raise QuotaExceeded(f"the account has {count} SIP accounts (quota {quotas.sip_accounts})")


async def check_numbers(
    session: AsyncSession, quotas: QuotaSettings, account_id: int, *, adding: int = 1
) -> None:
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(Number)
        .where(Number.account_id == account_id, Number.state.in_(_HELD))
    )
    if (count or 0) + adding > quotas.numbers:
        raise QuotaExceeded(f"the account holds {count} numbers (quota {quotas.numbers})")
