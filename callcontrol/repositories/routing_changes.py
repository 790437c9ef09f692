"""The change feed of routing: which DIDs' snapshots may be stale since a cursor.

The database writes ``routing_changes`` itself, by triggers (migration 0005),
whoever changes a table ``SqlNumberDirectory.snapshot`` reads; this module only
reads that log (and prunes it). The rules it keeps:

- A cursor is the highest log id a reader has seen. ``cursor()`` is where a
  reader starts, taken *before* its full sync (``routed_numbers()`` and the
  snapshots); ``since(cursor)`` then gives the new cursor and the e164s whose
  routing may have changed, or None for "everything may have changed" (a rates
  change; more than ``max_changes`` log rows at once).
- Rows resolve to e164s: a number's own row by the e164 it logged (so a deleted
  or renumbered number is still named), a forwarding/media row by its number,
  an account row by all the account's numbers, a row of NULLs to everything.
  A row naming a number that no longer exists names nothing.
- PostgreSQL hands out ids when a row is written, not when it commits: id 10
  may become visible after id 11 was read. So an id skipped below the cursor is
  a gap, read again (``id > cursor OR id BETWEEN lo AND hi``) until it shows up
  or ``gap_ttl_s`` has passed (its transaction rolled back; no transaction
  that writes this log runs that long). ``cursor()`` counts as gaps the missing
  ids among the newest ``GAP_WINDOW`` ids, so a transaction open during a full
  sync is not lost either. SQLite commits one writer at a time: no gap there
  outlives the next read. The gaps live in the feed: one feed per reader.
- Reads go to the driver on a pooled connection, outside any transaction: no
  BEGIN (on SQLite the engine's BEGIN IMMEDIATE would take the write lock 4
  times a second). A read that finds nothing is one index probe.
- The log is pruned by age, never by a reader's cursor: several engines may
  read it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from callcontrol.db.models import Number, RoutingChange

log = structlog.get_logger(__name__)
_CHANGES = cast(sa.Table, RoutingChange.__table__)
_NUMBERS = cast(sa.Table, Number.__table__)

GAP_WINDOW = 10_000  # ids below the newest that cursor() checks for gaps
MAX_GAPS = 100  # ranges; more means something is badly wrong: the oldest go


class _Compiled:
    """A statement compiled once for a dialect, sent to the driver positionally."""

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(compiled)
        self._names = tuple(compiled.positiontup or ())
        self._defaults = {name: bind.value for name, bind in compiled.binds.items()}

    def args(self, params: Mapping[str, int]) -> list[Any]:
        return [params[name] if name in params else self._defaults[name] for name in self._names]


def _changes_query(gaps: int) -> sa.Select[Any]:
    """Log rows past the cursor or in one of ``gaps`` ranges, with the e164 each names."""
    by_id, by_account = _NUMBERS.alias("by_id"), _NUMBERS.alias("by_account")
    changes = _CHANGES
    ranges = (
        changes.c.id.between(sa.bindparam(f"lo{i}"), sa.bindparam(f"hi{i}")) for i in range(gaps)
    )
    return (
        sa.select(
            changes.c.id,
            changes.c.number_id,
            changes.c.account_id,
            sa.func.coalesce(changes.c.e164, by_id.c.e164, by_account.c.e164),
        )
        .select_from(
            changes.outerjoin(by_id, by_id.c.id == changes.c.number_id).outerjoin(
                by_account, by_account.c.account_id == changes.c.account_id
            )
        )
        .where(sa.or_(changes.c.id > sa.bindparam("cursor"), *ranges))
        .order_by(changes.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )


def _newest_query() -> sa.Select[Any]:
    """The newest id, and the ids among the newest ``window`` that follow a gap
    (the first row too: its predecessor is the window's floor)."""
    changes = _CHANGES
    newest = sa.select(sa.func.max(changes.c.id)).scalar_subquery()
    recent = (
        sa.select(
            changes.c.id,
            sa.func.lag(changes.c.id).over(order_by=changes.c.id).label("prev"),
            sa.func.max(changes.c.id).over().label("newest"),
        )
        .where(changes.c.id > newest - sa.bindparam("window"))
        .subquery("recent")
    )
    return sa.select(recent.c.id, recent.c.prev, recent.c.newest).where(
        sa.or_(recent.c.prev.is_(None), recent.c.id > recent.c.prev + 1)
    )


_ROUTED_NUMBERS = sa.select(_NUMBERS.c.e164).order_by(_NUMBERS.c.e164)


class _Gaps:
    """Id ranges below the cursor not seen yet, each with when it was noticed."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._ranges: list[tuple[int, int, float]] = []  # (lo, hi, noticed_at), sorted

    def open(self, cursor: int, now: float) -> list[tuple[int, int]]:
        """The ranges still worth reading: younger than the TTL, at or below ``cursor``
        (above it ``id > cursor`` reads them anyway)."""
        self._ranges = [
            (lo, min(hi, cursor), noticed)
            for lo, hi, noticed in self._ranges
            if now - noticed < self._ttl_s and lo <= cursor
        ]
        return [(lo, hi) for lo, hi, _ in self._ranges]

    def add(self, lo: int, hi: int, now: float) -> None:
        merged: list[tuple[int, int, float]] = []
        for r_lo, r_hi, noticed in sorted([*self._ranges, (lo, hi, now)]):
            if merged and r_lo <= merged[-1][1] + 1:
                m_lo, m_hi, m_noticed = merged[-1]
                merged[-1] = (m_lo, max(m_hi, r_hi), max(m_noticed, noticed))
            else:
                merged.append((r_lo, r_hi, noticed))
        if len(merged) > MAX_GAPS:
            oldest = sorted(merged, key=lambda r: r[2])[: len(merged) - MAX_GAPS]
            log.warning("routing_change_gaps_dropped", ranges=len(oldest))
            merged = [r for r in merged if r not in oldest]
        self._ranges = merged

    def fill(self, ids: Iterable[int]) -> None:
        """These ids showed up: they are gaps no more."""
        found = sorted(set(ids))
        if not found:
            return
        kept: list[tuple[int, int, float]] = []
        for lo, hi, noticed in self._ranges:
            start = lo
            for found_id in (i for i in found if lo <= i <= hi):
                if found_id > start:
                    kept.append((start, found_id - 1, noticed))
                start = found_id + 1
            if start <= hi:
                kept.append((start, hi, noticed))
        self._ranges = kept


class RoutingChangeFeed:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_changes: int = 5_000,
        gap_ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._sqlite = engine.dialect.name == "sqlite"
        self._max_changes = max_changes
        self._clock = clock
        self._gaps = _Gaps(gap_ttl_s)
        self._by_gaps: dict[int, _Compiled] = {}
        self._newest = _Compiled(_newest_query(), self._dialect)
        self._routed = _Compiled(_ROUTED_NUMBERS, self._dialect)

    async def cursor(self) -> int:
        """The newest log id (0: none yet): where a reader starts, before its full sync."""
        rows = await self._fetch(self._newest, window=GAP_WINDOW)
        if not rows:
            return 0
        now, newest = self._clock(), int(rows[0][2])
        floor = max(newest - GAP_WINDOW, 0)
        for row_id, prev, _ in rows:
            lo = (floor if prev is None else int(prev)) + 1
            if row_id > lo:
                self._gaps.add(lo, row_id - 1, now)
        return newest

    async def since(self, cursor: int) -> tuple[int, frozenset[str] | None]:
        """The new cursor and the e164s whose routing may have changed after
        ``cursor``; None instead of the set: everything may have changed."""
        now = self._clock()
        gaps = self._gaps.open(cursor, now)
        params = {"cursor": cursor, "limit": self._max_changes + 1}
        for i, (lo, hi) in enumerate(gaps):
            params |= {f"lo{i}": lo, f"hi{i}": hi}
        rows = await self._fetch(self._changes(len(gaps)), **params)
        if len(rows) > self._max_changes:
            log.info("routing_changes_overflow", cursor=cursor, max_changes=self._max_changes)
            return await self.cursor(), None
        ids = sorted({int(row[0]) for row in rows})
        self._gaps.fill(i for i in ids if i <= cursor)
        newest = cursor
        for row_id in (i for i in ids if i > cursor):
            if row_id > newest + 1:
                self._gaps.add(newest + 1, row_id - 1, now)
            newest = row_id
        return newest, _named(rows)

    async def prune(self, older_than: datetime) -> int:
        """Delete the log rows written before ``older_than``; how many went."""
        statement = sa.delete(_CHANGES).where(_CHANGES.c.changed_at < older_than)
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)

    async def routed_numbers(self) -> list[str]:
        """Every e164 in ``numbers`` (a full sync), in order."""
        return [str(row[0]) for row in await self._fetch(self._routed)]

    def _changes(self, gaps: int) -> _Compiled:
        compiled = self._by_gaps.get(gaps)
        if compiled is None:
            compiled = self._by_gaps[gaps] = _Compiled(_changes_query(gaps), self._dialect)
        return compiled

    async def _fetch(self, compiled: _Compiled, **params: int) -> Sequence[Sequence[Any]]:
        args = compiled.args(params)
        async with self._engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            if self._sqlite:
                return list(await driver.execute_fetchall(compiled.sql, args))
            return list(await driver.fetch(compiled.sql, *args))


def _named(rows: Iterable[Sequence[Any]]) -> frozenset[str] | None:
    """The e164s the rows name; None if one of them names every number."""
    named: set[str] = set()
    for _id, number_id, account_id, e164 in rows:
        if e164 is not None:
            named.add(e164)
        elif number_id is None and account_id is None:
            return None
    return frozenset(named)
