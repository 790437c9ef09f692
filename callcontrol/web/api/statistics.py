"""Statistics of an account: its calls (CDRs), per-number totals for a period, its
transactions (the ledger), and CSV exports of both lists.

Periods are whole UTC days, both ends inclusive (9999-12-30 the last one).
One rounding rule for talk time, everywhere: each call's talk time is rounded
UP to a whole second (a second begun counts, as per-second billing counts it),
and totals are sums of those per-call seconds (``talk_seconds``); ``minutes``
rounds each call up to a whole minute. A 2.008 s call is 3 s in the call list,
in the CSV and in the per-number totals. CSV cells that a spreadsheet
would run as a formula are prefixed with ``'`` (numbers such as ``+4930...`` and
``-500`` stay as they are).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.orm import InstrumentedAttribute

from callcontrol.db.models import Cdr, LedgerEntry, Number
from callcontrol.domain.vocabulary import Disposition
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import invalid
from callcontrol.web.api.schemas import (
    CallList,
    CallOut,
    NumberTotals,
    PeriodQuery,
    TotalsOut,
    TotalsQuery,
    TransactionList,
    TransactionOut,
)

TAG = "statistics"
CSV_MAX_ROWS = 100_000
LAST_DAY = date.max - timedelta(days=1)
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9]+$")


def period(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """[start, end) in aware UTC for whole days ``since``..``until`` (inclusive)."""
    if since is not None and until is not None and since > until:
        raise invalid("query.until", f"the period ends ({until}) before it starts ({since})")
    for name, day in (("since", since), ("until", until)):
        if day is not None and day >= date.max:  # its end (the next midnight) has no date
            raise invalid(f"query.{name}", f"the last day a period may name is {LAST_DAY}")
    start = datetime.combine(since, time(), UTC) if since else None
    end = datetime.combine(until + timedelta(days=1), time(), UTC) if until else None
    return start, end


def _within(
    column: InstrumentedAttribute[datetime], since: date | None, until: date | None
) -> list[sa.ColumnElement[bool]]:
    start, end = period(since, until)
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def calls_query(account_id: int, since: date | None, until: date | None) -> sa.Select[Cdr]:
    return (
        sa.select(Cdr)
        .where(Cdr.account_id == account_id, *_within(Cdr.started_at, since, until))
        .order_by(Cdr.started_at.desc(), Cdr.id)
    )


def talk_seconds(talk_ms: int) -> int:
    """A call's talk time in whole seconds, rounded up (see the module's rule)."""
    return (talk_ms + 999) // 1000


def call_out(row: Cdr) -> CallOut:
    return CallOut(
        id=row.id, direction=row.direction, did=row.did, caller=row.caller,
        started_at=row.started_at, answered_at=row.answered_at, ended_at=row.ended_at,
        disposition=row.disposition, answered_destination=row.answered_destination,
        talk_seconds=talk_seconds(row.talk_ms), cost_minor=row.cost_minor, currency=row.currency,
    )  # fmt: skip


def transactions_query(
    account_id: int, since: date | None, until: date | None
) -> sa.Select[LedgerEntry, str]:
    return (
        sa.select(LedgerEntry, Number.e164)
        .outerjoin(Number, Number.id == LedgerEntry.number_id)
        .where(LedgerEntry.account_id == account_id)
        .where(*_within(LedgerEntry.created_at, since, until))
        .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
    )


def transaction_out(row: LedgerEntry, did: str | None) -> TransactionOut:
    return TransactionOut(
        id=row.id, kind=row.kind, amount_minor=row.amount_minor, currency=row.currency,
        created_at=row.created_at, did=did, period_start=row.period_start,
        description=row.description,
    )  # fmt: skip


async def list_calls(call: ApiCall) -> CallList:
    q = call.query_as(PeriodQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        query = calls_query(owner.id, q.since, q.until).limit(q.limit).offset(q.offset)
        return CallList(items=[call_out(r) for r in await session.scalars(query)])


async def list_transactions(call: ApiCall) -> TransactionList:
    q = call.query_as(PeriodQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        query = transactions_query(owner.id, q.since, q.until).limit(q.limit).offset(q.offset)
        rows = await session.execute(query)
        return TransactionList(items=[transaction_out(e, did) for e, did in rows])


async def number_totals(call: ApiCall) -> TotalsOut:
    q = call.query_as(TotalsQuery)
    answered = sa.case((Cdr.disposition == Disposition.ANSWERED, 1), else_=0)
    query = (
        sa.select(
            Cdr.did,
            sa.func.count(),
            sa.func.sum(answered),
            sa.func.sum((Cdr.talk_ms + 59_999) // 60_000),
            sa.func.sum((Cdr.talk_ms + 999) // 1000),  # the rule of talk_seconds()
            sa.func.sum(Cdr.cost_minor),
        )
        .group_by(Cdr.did)
        .order_by(Cdr.did)
    )
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        where = [Cdr.account_id == owner.id, *_within(Cdr.started_at, q.since, q.until)]
        rows = await session.execute(query.where(*where))
        items = [
            NumberTotals(
                did=did,
                calls=int(n),
                answered=int(ok or 0),
                minutes=int(minutes or 0),
                talk_seconds=int(talk_s or 0),
                cost_minor=int(cost or 0),
            )
            for did, n, ok, minutes, talk_s, cost in rows
        ]
    return TotalsOut(since=q.since, until=q.until, items=items)


def _cell(value: object) -> str:
    text = (
        ""
        if value is None
        else str(value.isoformat() if isinstance(value, (date, datetime)) else value)
    )
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def csv_response(models: Iterable[BaseModel], fields: Sequence[str], name: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(fields)
    for model in models:
        writer.writerow([_cell(getattr(model, f)) for f in fields])
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def calls_csv(call: ApiCall) -> web.Response:
    q = call.query_as(TotalsQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        rows = await session.scalars(calls_query(owner.id, q.since, q.until).limit(CSV_MAX_ROWS))
        calls = [call_out(r) for r in rows]
    return csv_response(calls, list(CallOut.model_fields), f"calls-{owner.id}.csv")


async def transactions_csv(call: ApiCall) -> web.Response:
    q = call.query_as(TotalsQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        query = transactions_query(owner.id, q.since, q.until).limit(CSV_MAX_ROWS)
        entries = [transaction_out(e, did) for e, did in await session.execute(query)]
    return csv_response(entries, list(TransactionOut.model_fields), f"transactions-{owner.id}.csv")


ACC = "/api/v1/accounts/{account_id}"
ROUTES = [
    Route("GET", ACC + "/calls", list_calls, "Calls (CDRs) of a period, newest first", TAG,
          query=PeriodQuery, response=CallList),
    Route("GET", ACC + "/calls.csv", calls_csv, "Calls of a period as CSV", TAG,
          query=TotalsQuery, media_type="text/csv"),
    Route("GET", ACC + "/statistics", number_totals,
          "Per-number totals of a period: calls, answered, minutes, cost", TAG,
          query=TotalsQuery, response=TotalsOut),
    Route("GET", ACC + "/transactions", list_transactions, "Transactions (the ledger)", TAG,
          query=PeriodQuery, response=TransactionList),
    Route("GET", ACC + "/transactions.csv", transactions_csv, "Transactions as CSV", TAG,
          query=TotalsQuery, media_type="text/csv"),
]  # fmt: skip
