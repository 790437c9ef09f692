"""Test data through the real models, and reads of what the engine stored.

Synchronous wrappers (one short event loop per call) so e2e tests can stay
plain functions while the engine runs in its own process.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db import ledger
from callcontrol.db.engine import create_engine, session_factory
from callcontrol.db.models import (
    Account,
    Cdr,
    CdrLeg,
    ForwardingDestination,
    ForwardingRule,
    LedgerEntry,
    MediaFile,
    Number,
    Rate,
    VoicemailMessage,
)
from callcontrol.domain.vocabulary import (
    DestinationType,
    ForwardingMode,
    LedgerKind,
    MediaKind,
    NumberKind,
    NumberState,
)
from callcontrol.settings import DatabaseSettings

T = TypeVar("T")
_dids = itertools.count(100)


def next_did(prefix: str = "+4930555") -> str:
    """A DID no other test in this run uses."""
    return f"{prefix}{next(_dids):04d}"


class Seeder:
    def __init__(self, url: str) -> None:
        self.url = url

    def _run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def go() -> T:
            engine = create_engine(DatabaseSettings(url=self.url), pooled=False)
            try:
                async with session_factory(engine)() as session, session.begin():
                    return await work(session)
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def account(self, *, balance_minor: int = 1000, email: str = "owner@example.invalid") -> int:
        async def work(session: AsyncSession) -> int:
            account = Account(name="Test customer", email=email, currency="EUR")
            session.add(account)
            await session.flush()
            if balance_minor:
                await ledger.post(
                    session,
                    account_id=account.id,
                    kind=LedgerKind.TOP_UP if balance_minor > 0 else LedgerKind.ADJUSTMENT,
                    amount_minor=balance_minor,
                    currency="EUR",
                )
            return account.id

        return self._run(work)

    def number(
        self,
        account_id: int,
        *,
        did: str | None = None,
        state: NumberState = NumberState.ACTIVE,
        kind: NumberKind = NumberKind.VOICE,
        mode: ForwardingMode = ForwardingMode.SEQUENTIAL,
        destinations: Sequence[tuple[DestinationType, str, int]] = (),
        voicemail: bool = False,
        greeting: str | None = None,
        voicemail_greeting: str | None = None,
        activated_on: date | None = None,
        callerid_service: bool = False,
        region: tuple[int, str] = (49, "DE"),
    ) -> str:
        did = did or next_did()
        self_session: Any = None

        async def media(kind: MediaKind, stored_name: str | None) -> int | None:
            if stored_name is None:
                return None
            row = MediaFile(
                account_id=account_id,
                kind=kind,
                original_name=stored_name,
                stored_name=stored_name,
                size_bytes=0,
                duration_ms=0,
            )
            self_session.add(row)
            await self_session.flush()
            return row.id

        async def work(session: AsyncSession) -> str:
            nonlocal self_session
            self_session = session
            greeting_id = await media(MediaKind.GREETING, greeting)
            vm_greeting_id = await media(MediaKind.VOICEMAIL_GREETING, voicemail_greeting)
            number = Number(
                e164=did,
                country_code=region[0],
                region=region[1],
                kind=kind,
                state=state,
                account_id=account_id,
                activated_on=activated_on or datetime.now(UTC).date(),
                monthly_fee_minor=500,
                setup_fee_minor=0,
                currency="EUR",
                voicemail_enabled=voicemail,
                callerid_service=callerid_service,
                greeting_media_id=greeting_id,
                voicemail_greeting_media_id=vm_greeting_id,
            )
            session.add(number)
            await session.flush()
            session.add(ForwardingRule(number_id=number.id, mode=mode))
            for position, (kind_, target, timeout) in enumerate(destinations, start=1):
                session.add(
                    ForwardingDestination(
                        number_id=number.id,
                        position=position,
                        type=kind_,
                        target=target,
                        ring_timeout_s=timeout,
                    )
                )
            return did

        return self._run(work)

    def present(self, account_id: int, did: str | None) -> None:
        """Make ``did`` the number the account's SIP accounts present (None: none)."""

        async def work(session: AsyncSession) -> None:
            account = await session.get(Account, account_id)
            assert account is not None
            number_id = None
            if did is not None:
                number_id = await session.scalar(sa.select(Number.id).where(Number.e164 == did))
                assert number_id is not None, did
            account.callerid_number_id = number_id

        self._run(work)

    def set_state(self, did: str, state: NumberState) -> None:
        """Move the number to ``state`` (as an operator's suspension does)."""

        async def work(session: AsyncSession) -> None:
            await session.execute(sa.update(Number).where(Number.e164 == did).values(state=state))

        self._run(work)

    def rate(self, prefix: str, per_minute_minor: int) -> None:
        async def work(session: AsyncSession) -> None:
            exists = await session.scalar(sa.select(Rate.id).where(Rate.prefix == prefix))
            if exists is None:
                session.add(
                    Rate(prefix=prefix, rate_per_minute_minor=per_minute_minor, currency="EUR")
                )

        self._run(work)

    def cdrs_for(self, did: str, *, caller: str | None = None) -> list[dict[str, Any]]:
        """The CDRs of calls to ``did`` (and from ``caller``, when given: outbound
        calls to the same number from different SIP accounts)."""

        async def work(session: AsyncSession) -> list[dict[str, Any]]:
            query = sa.select(Cdr).where(Cdr.did == did)
            if caller is not None:
                query = query.where(Cdr.caller == caller)
            rows = (await session.scalars(query)).all()
            out = []
            for row in rows:
                legs = (
                    await session.scalars(
                        sa.select(CdrLeg).where(CdrLeg.cdr_id == row.id).order_by(CdrLeg.position)
                    )
                ).all()
                record = {c.name: getattr(row, c.key) for c in Cdr.__table__.columns}
                record["legs"] = [
                    {c.name: getattr(leg, c.key) for c in CdrLeg.__table__.columns} for leg in legs
                ]
                out.append(record)
            return out

        return self._run(work)

    def wait_for_cdr(
        self, did: str, timeout_s: float = 15.0, *, caller: str | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = self.cdrs_for(did, caller=caller)
            if rows:
                assert len(rows) == 1, rows
                return rows[0]
            time.sleep(0.2)
        raise AssertionError(f"no CDR for {did} within {timeout_s}s")

    def ledger_entries(self, account_id: int) -> list[tuple[LedgerKind, int, str | None]]:
        async def work(session: AsyncSession) -> list[tuple[LedgerKind, int, str | None]]:
            rows = (
                await session.scalars(
                    sa.select(LedgerEntry)
                    .where(LedgerEntry.account_id == account_id)
                    .order_by(LedgerEntry.id)
                )
            ).all()
            return [(r.kind, r.amount_minor, r.idempotency_key) for r in rows]

        return self._run(work)

    def balance(self, account_id: int) -> int:
        async def work(session: AsyncSession) -> int:
            value = await session.scalar(
                sa.select(Account.balance_minor).where(Account.id == account_id)
            )
            return int(value or 0)

        return self._run(work)

    def voicemails(self, account_id: int) -> list[VoicemailMessage]:
        async def work(session: AsyncSession) -> list[VoicemailMessage]:
            rows = await session.scalars(
                sa.select(VoicemailMessage).where(VoicemailMessage.account_id == account_id)
            )
            return list(rows.all())

        return self._run(work)

    def wait_for_mailed_voicemails(
        self, account_id: int, count: int = 1, timeout_s: float = 10.0
    ) -> list[VoicemailMessage]:
        """The account's messages once `count` of them are marked mailed.

        The mail is sent first and marked afterwards (a crash between the two
        sends it again rather than never), so a test that has seen the mail
        arrive waits here for the mark.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            messages = self.voicemails(account_id)
            if sum(m.mailed_at is not None for m in messages) >= count:
                return messages
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{len(messages)} message(s), mailed_at={[m.mailed_at for m in messages]}"
                    f" after {timeout_s}s"
                )
            time.sleep(0.1)
