"""Benchmark: what the spool costs and how fast it drains.

- journal: ``SpoolingLedger.record_call`` with the database away (every CDR
  journaled, ``synchronous=FULL``): time per CDR, as a call's task sees it;
- replay: the same CDRs (each with a PSTN charge) replayed into a migrated
  database by the replayer: CDRs per second, until the spool is empty.

SQLite by default (a temporary file); ``--postgresql`` starts a throwaway
PostgreSQL (tests/support/postgres.py). The spool file lives in a temporary
folder on the same disk.

    python -m bench.spool [--cdrs 2000] [--postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.postgres import PostgresCluster  # noqa: E402

from callcontrol.db import ledger  # noqa: E402
from callcontrol.db.engine import create_engine, session_factory, upgrade  # noqa: E402
from callcontrol.db.models import Account  # noqa: E402
from callcontrol.domain.call_events import CallRecord, LegRecord  # noqa: E402
from callcontrol.domain.rating import Rate  # noqa: E402
from callcontrol.domain.vocabulary import (  # noqa: E402
    CallDirection,
    DestinationType,
    Disposition,
    LedgerKind,
    LegOutcome,
)
from callcontrol.engine.supervisor import TaskSupervisor  # noqa: E402
from callcontrol.repositories.cdrs import SqlCallLedger  # noqa: E402
from callcontrol.repositories.spool import DATABASE_QUEUE, Spool, SpoolKind  # noqa: E402
from callcontrol.repositories.spooling import (  # noqa: E402
    SpoolingLedger,
    SpoolReplayer,
    replay_calls,
)
from callcontrol.settings import DatabaseSettings  # noqa: E402

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def pstn_call(call_id: str, account_id: int) -> CallRecord:
    """A 61 s answered call forwarded to a French mobile at 12 per minute: one charge."""
    leg = LegRecord(
        position=1, type=DestinationType.PSTN, target="+33612345678",
        channel_id=f"{call_id}-leg1", started_at=T0, answered_at=T0 + timedelta(seconds=3),
        ended_at=T0 + timedelta(seconds=64), outcome=LegOutcome.ANSWERED, cause=16,
        billed_seconds=61, rate=Rate("336", 12, "EUR"),
    )  # fmt: skip
    return CallRecord(
        call_id=call_id, direction=CallDirection.INBOUND, did="+4930123456", number_id=None,
        account_id=account_id, caller="4915112345678", started_at=T0,
        answered_at=T0 + timedelta(seconds=3), ended_at=T0 + timedelta(seconds=64),
        disposition=Disposition.ANSWERED, cause=16, reject_reason=None, answered_position=1,
        ring_ms=2000, talk_ms=61_000, legs=(leg,),
    )  # fmt: skip


class DatabaseAway:
    async def record_call(self, record: CallRecord) -> None:
        raise ConnectionRefusedError(111, "Connect call failed")


async def bench(url: str, cdrs: int, folder: Path) -> None:
    settings = DatabaseSettings(url=url)
    await upgrade(settings)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        account = Account(name="bench", email="bench@example.invalid", currency="EUR")
        session.add(account)
        await session.flush()
        await ledger.post(session, account_id=account.id, kind=LedgerKind.TOP_UP,
                          amount_minor=10**9, currency="EUR")  # fmt: skip
        account_id = account.id
    spool = Spool(folder / "spool.db")
    await spool.open()
    spooling = SpoolingLedger(DatabaseAway(), spool=spool, writes=TaskSupervisor("w"),
                              timeout_s=2.0)  # fmt: skip
    waits = []
    for n in range(cdrs):
        began = time.perf_counter()
        await spooling.record_call(pstn_call(f"bench-{n}", account_id))
        waits.append(time.perf_counter() - began)
    waits.sort()
    print(f"journal: {cdrs} CDRs, median {statistics.median(waits) * 1000:.2f} ms, "
          f"p99 {waits[int(len(waits) * 0.99)] * 1000:.2f} ms per CDR")  # fmt: skip
    replays = {SpoolKind.CDR: replay_calls(SqlCallLedger(sessions=sessions))}
    replayer = SpoolReplayer(spool=spool, kinds=DATABASE_QUEUE, replay=replays.__getitem__,
                             retry_min_s=0.2, retry_max_s=1.0)  # fmt: skip
    began = time.perf_counter()
    task = asyncio.create_task(replayer.run())
    for _ in range(100_000):
        if not spool.pending(DATABASE_QUEUE):
            break
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - began
    task.cancel()
    print(f"replay: {cdrs} CDRs with charges in {seconds:.2f} s ({cdrs / seconds:.0f}/s)")
    await spool.close()
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdrs", type=int, default=2000)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.postgresql:
            cluster = PostgresCluster.start()
            try:
                cluster.create_database("bench_spool")
                asyncio.run(bench(cluster.url("bench_spool"), args.cdrs, folder))
            finally:
                cluster.stop()
        else:
            asyncio.run(bench(f"sqlite+aiosqlite:///{folder / 'bench.db'}", args.cdrs, folder))


if __name__ == "__main__":
    main()
