"""Benchmark: provision and activate 1,000 SIP accounts with each back-end.

- file: 1,000 ``create_sip_account`` (database inserts), then the coalesced
  render of ``pjsip_callcontrol.conf`` and one res_pjsip reload through a fake
  AMI; "active" = the reload was answered.
- realtime: 1,000 ``create_sip_account`` each committing its ps_* rows in
  PostgreSQL; "active" = committed (Asterisk reads rows on demand). Also a
  full ``sync`` of 1,000 accounts into empty tables, and a no-op ``sync``.

Starts its own throwaway PostgreSQL (tests/support/postgres.py) unless given
``--url`` (a PostgreSQL server URL without database, e.g.
``postgresql+asyncpg://postgres@127.0.0.1:5432``; two databases are created).

    python bench/provision.py [--accounts 1000] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sqlalchemy as sa  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402
from support.fake_ami import FakeAmi  # noqa: E402
from support.postgres import PostgresCluster  # noqa: E402

from callcontrol.db.engine import create_engine, session_factory, upgrade  # noqa: E402
from callcontrol.db.models import Account  # noqa: E402
from callcontrol.settings import DatabaseSettings  # noqa: E402
from provisioning.ami import AmiClient  # noqa: E402
from provisioning.file_backend import FileBackend  # noqa: E402
from provisioning.realtime_backend import RealtimeBackend  # noqa: E402
from provisioning.service import ProvisioningService, open_provisioning  # noqa: E402
from provisioning.settings import ProvisioningSettings  # noqa: E402


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


async def bench_file(server: str, n: int) -> None:
    url = await fresh_callcontrol_db(server, "bench_file")
    engine = create_engine(DatabaseSettings(url=url))
    sessions = session_factory(engine)
    account_id = await new_account(sessions)
    with tempfile.TemporaryDirectory() as tmp:
        settings = ProvisioningSettings(file_path=Path(tmp) / "pjsip_callcontrol.conf")
        async with FakeAmi() as ami:
            client = AmiClient(ami.settings(), timeout_s=5.0)
            async with open_provisioning(settings, sessions, reloader=client) as service:
                backend = service.backend
                assert isinstance(backend, FileBackend)
                began = time.perf_counter()
                for i in range(n):
                    await service.create_sip_account(account_id, f"user{i:05d}")
                inserted = time.perf_counter()
                await backend.flush()
                active = time.perf_counter()
                size = settings.file_path.stat().st_size
                render_began = time.perf_counter()
                report = await service.sync()  # no-op: render + compare only
                noop = time.perf_counter() - render_began
            await client.close()
    await engine.dispose()
    print(f"file backend, {n} accounts (coalesce {settings.reload_coalesce_s}s):")
    print(
        f"  DB inserts:                  {inserted - began:7.2f} s ({_rate(n, inserted - began)})"
    )
    print(f"  last insert -> reloaded:     {active - inserted:7.2f} s (flush: no quiet period)")
    print(f"  total to active:             {active - began:7.2f} s")
    print(f"  reloads: {ami.reloads}; file {size / 1024:.0f} KiB; no-op sync {noop * 1000:.0f} ms "
          f"({report.changes.summary()})")  # fmt: skip


async def bench_realtime(server: str, n: int) -> None:
    url = await fresh_callcontrol_db(server, "bench_rt_cc")
    rt_url = await create_database(server, "bench_rt_asterisk")
    engine = create_engine(DatabaseSettings(url=url))
    sessions = session_factory(engine)
    account_id = await new_account(sessions)
    settings = ProvisioningSettings(backend="realtime", realtime_url=SecretStr(rt_url))
    backend = RealtimeBackend.from_url(rt_url, settings)
    service = ProvisioningService(sessions, backend, settings)
    began = time.perf_counter()
    for i in range(n):
        await service.create_sip_account(account_id, f"user{i:05d}")
    created = time.perf_counter() - began
    rt_engine = create_engine(DatabaseSettings(url=rt_url))
    async with rt_engine.begin() as conn:
        for table in ("ps_endpoints", "ps_auths", "ps_aors"):
            await conn.execute(sa.text(f"DELETE FROM {table}"))
    began = time.perf_counter()
    full = await service.sync()
    full_s = time.perf_counter() - began
    began = time.perf_counter()
    noop = await service.sync()
    noop_s = time.perf_counter() - began
    await backend.close()
    await rt_engine.dispose()
    await engine.dispose()
    print(f"realtime backend, {n} accounts:")
    print(f"  create (DB insert + 3 ps_* rows each, live at commit): {created:6.2f} s "
          f"({_rate(n, created)})")  # fmt: skip
    print(f"  full sync into empty ps_* tables: {full_s:6.2f} s ({len(full.changes.added)} rows)")
    print(f"  no-op sync: {noop_s * 1000:.0f} ms ({noop.changes.summary()})")


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "-"


async def main_async(url: str, n: int) -> None:
    await bench_file(url, n)
    await bench_realtime(url, n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--url", default=None, help="PostgreSQL server URL (no database)")
    args = parser.parse_args()
    with postgres_server(args.url) as server:
        asyncio.run(main_async(server, args.accounts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
