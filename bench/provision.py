"""Benchmark: provision and activate 1,000 SIP accounts with each back-end,
against the real Asterisk of the sandbox.

- file: 1,000 ``create_sip_account`` (database inserts), then the coalesced
  render of the sandbox's ``pjsip_callcontrol.conf`` and the res_pjsip reload
  over Asterisk's AMI; "active" = Asterisk itself lists all 1,000 endpoints
  (``pjsip show endpoints``).
- realtime: Asterisk started reading ps_* tables from PostgreSQL; 1,000
  ``create_sip_account`` each committing its ps_* rows; "active" = Asterisk
  finds the last one (``pjsip show endpoint``; rows are read on demand, no
  reload). Also a full ``sync`` of 1,000 accounts into empty tables, and a
  no-op ``sync``.

Starts its own throwaway PostgreSQL (tests/support/postgres.py) unless given
``--url`` (a PostgreSQL server URL without database, e.g.
``postgresql+asyncpg://postgres@127.0.0.1:5432``; one database per back-end
is created). Asterisk is started (and stopped) once per back-end, so it must
not be running already; the machine's Asterisk lock waits for a test run.

    python bench/provision.py [--accounts 1000] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402
from support.asterisk import AsteriskSandbox, asterisk_sandbox, default_config  # noqa: E402
from support.postgres import PostgresCluster  # noqa: E402
from support.provisioning import provisioning_settings  # noqa: E402

from callcontrol.db.engine import create_engine, session_factory, upgrade  # noqa: E402
from callcontrol.db.models import Account  # noqa: E402
from callcontrol.settings import AmiSettings, DatabaseSettings  # noqa: E402
from provisioning.ami import AmiClient  # noqa: E402
from provisioning.file_backend import FileBackend  # noqa: E402
from provisioning.realtime_backend import RealtimeBackend  # noqa: E402
from provisioning.service import ProvisioningService, open_provisioning  # noqa: E402


@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url.rstrip("/")
        return
    cluster = PostgresCluster.start()
    try:
        yield cluster.url("").rstrip("/")
    finally:
        cluster.stop()


async def create_database(server: str, name: str) -> str:
    admin = create_engine(DatabaseSettings(url=f"{server}/postgres"), pooled=False)
    async with admin.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await admin.dispose()
    return f"{server}/{name}"


async def fresh_callcontrol_db(server: str, name: str) -> str:
    url = await create_database(server, name)
    await upgrade(DatabaseSettings(url=url))
    return url


async def new_account(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session, session.begin():
        account = Account(name="Bench", email="bench@example.invalid", currency="EUR")
        session.add(account)
        await session.flush()
        return int(account.id)


def endpoints_listed(asterisk: AsteriskSandbox) -> int:
    listing = asterisk.cli("pjsip show endpoints")
    return sum(1 for line in listing.splitlines() if line.strip().startswith("Endpoint:  user"))


def wait_until(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("Asterisk did not show the accounts in time")
        time.sleep(0.05)


def bench_file(server: str, n: int) -> None:
    url = asyncio.run(fresh_callcontrol_db(server, "bench_file"))
    with asterisk_sandbox(default_config()) as asterisk:
        settings = provisioning_settings(asterisk)

        async def provision() -> tuple[float, float, float, int, int, float, str]:
            engine = create_engine(DatabaseSettings(url=url))
            sessions = session_factory(engine)
            account_id = await new_account(sessions)
            client = AmiClient(AmiSettings(enabled=True), timeout_s=10.0)
            try:
                async with open_provisioning(settings, sessions, reloader=client) as service:
                    backend = service.backend
                    assert isinstance(backend, FileBackend)
                    began = time.perf_counter()
                    for i in range(n):
                        await service.create_sip_account(account_id, f"user{i:05d}")
                    inserted = time.perf_counter() - began
                    await backend.flush()
                    reloaded = time.perf_counter() - began
                    await asyncio.to_thread(wait_until, lambda: endpoints_listed(asterisk) >= n)
                    active = time.perf_counter() - began
                    listed = endpoints_listed(asterisk)
                    size = settings.file_path.stat().st_size
                    noop_began = time.perf_counter()
                    report = await service.sync()  # no-op: render + compare only
                    noop = time.perf_counter() - noop_began
                    return inserted, reloaded, active, listed, size, noop, report.changes.summary()
            finally:
                await client.close()
                await engine.dispose()

        inserted, reloaded, active, listed, size, noop, summary = asyncio.run(provision())
    print(f"file backend, {n} accounts (coalesce {settings.reload_coalesce_s}s), real Asterisk:")
    print(f"  DB inserts:                  {inserted:7.2f} s ({_rate(n, inserted)})")
    print(f"  + render, write, AMI reload: {reloaded:7.2f} s")
    print(f"  total to active (Asterisk lists {listed} endpoints): {active:7.2f} s")
    print(f"  file {size / 1024:.0f} KiB; no-op sync {noop * 1000:.0f} ms ({summary})")


def bench_realtime(server: str, n: int) -> None:
    # The callcontrol database doubles as Asterisk's realtime database, as in
    # the e2e tests on PostgreSQL (our migrations create the ps_* tables).
    url = asyncio.run(fresh_callcontrol_db(server, "bench_realtime"))
    with asterisk_sandbox(default_config(realtime_url=url)) as asterisk:
        settings = provisioning_settings(asterisk)
        last = f"user{n - 1:05d}"

        def found() -> bool:
            return "Unable to find" not in asterisk.cli(f"pjsip show endpoint {last}")

        async def provision() -> tuple[float, float, float, float, int, str]:
            engine = create_engine(DatabaseSettings(url=url))
            sessions = session_factory(engine)
            account_id = await new_account(sessions)
            backend = RealtimeBackend.from_url(url, settings)
            service = ProvisioningService(sessions, backend, settings)
            try:
                began = time.perf_counter()
                for i in range(n):
                    await service.create_sip_account(account_id, f"user{i:05d}")
                created = time.perf_counter() - began
                await asyncio.to_thread(wait_until, found)
                active = time.perf_counter() - began
                async with engine.begin() as conn:
                    for table in ("ps_endpoints", "ps_auths", "ps_aors"):
                        await conn.execute(sa.text(f"DELETE FROM {table}"))
                began = time.perf_counter()
                full = await service.sync()
                full_s = time.perf_counter() - began
                began = time.perf_counter()
                noop = await service.sync()
                noop_s = time.perf_counter() - began
                added = len(full.changes.added)
                return created, active, full_s, noop_s, added, noop.changes.summary()
            finally:
                await backend.close()
                await engine.dispose()

        assert not found()
        created, active, full_s, noop_s, rows, summary = asyncio.run(provision())
    print(f"realtime backend, {n} accounts, real Asterisk reading PostgreSQL:")
    print(f"  create (DB insert + 3 ps_* rows each, live at commit): {created:6.2f} s "
          f"({_rate(n, created)})")  # fmt: skip
    print(f"  total to active (Asterisk finds the last account): {active:6.2f} s")
    print(f"  full sync into empty ps_* tables: {full_s:6.2f} s ({rows} rows)")
    print(f"  no-op sync: {noop_s * 1000:.0f} ms ({summary})")


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--url", default=None, help="PostgreSQL server URL (no database)")
    args = parser.parse_args()
    with postgres_server(args.url) as server:
        bench_file(server, args.accounts)
        bench_realtime(server, args.accounts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
