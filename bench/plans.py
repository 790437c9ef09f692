"""bench.plans: the FastAGI executor's pushed plans at inventory scale.

Seeds ``--numbers`` forwarded DIDs, starts the real Asterisk (sandbox, its
lock held) and a FastAGI engine with pushed plans, and measures:

- how long the first full push takes (engine start to ``/health``
  ``plans_vouched``) and the engine CPU it costs, and how many AstDB entries
  it wrote;
- how long a change takes to reach AstDB: ``--changes`` times, one DID's
  forwarding target is updated in the database (as the API would) and
  ``database get`` is polled until the new plan is there;
- the engine's idle CPU while it follows the change log with nothing changing.

    python -m bench.plans --numbers 5000 --changes 40

Figures go to docs/benchmarks.md with the date; nothing is asserted here.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import sqlalchemy as sa  # noqa: E402
from support.asterisk import asterisk_sandbox, default_config  # noqa: E402
from support.data import Seeder  # noqa: E402

from bench.calls import agi_engine_process, cpu_seconds, database, machine  # noqa: E402
from callcontrol.agi.plan_push import PLANS_FAMILY  # noqa: E402
from callcontrol.db.engine import create_engine, session_factory  # noqa: E402
from callcontrol.db.models import (  # noqa: E402
    ForwardingDestination,
    ForwardingRule,
    Number,
)
from callcontrol.domain.contract import app_variable  # noqa: E402
from callcontrol.domain.vocabulary import (  # noqa: E402
    DestinationType,
    ForwardingMode,
    NumberKind,
    NumberState,
)
from callcontrol.settings import DatabaseSettings  # noqa: E402

FIRST_DID = 4930_500_000_000  # +4930500000000 ...


def did_of(index: int) -> str:
    return f"+{FIRST_DID + index}"


async def _seed(url: str, count: int, account_id: int) -> None:
    engine = create_engine(DatabaseSettings(url=url), pooled=False)
    try:
        async with session_factory(engine)() as session, session.begin():
            numbers = [
                Number(
                    e164=did_of(i),
                    country_code=49,
                    region="DE",
                    kind=NumberKind.VOICE,
                    state=NumberState.ACTIVE,
                    account_id=account_id,
                    monthly_fee_minor=500,
                    setup_fee_minor=0,
                    currency="EUR",
                )
                for i in range(count)
            ]
            session.add_all(numbers)
            await session.flush()
            for number in numbers:
                session.add(ForwardingRule(number_id=number.id, mode=ForwardingMode.SEQUENTIAL))
                session.add(
                    ForwardingDestination(
                        number_id=number.id,
                        position=1,
                        type=DestinationType.SIP_URI,
                        target="sip:far@127.0.0.3:5080",
                        ring_timeout_s=20,
                    )
                )
    finally:
        await engine.dispose()


async def _retarget(url: str, did: str, target: str) -> None:
    engine = create_engine(DatabaseSettings(url=url), pooled=False)
    try:
        async with engine.begin() as conn:
            number_id = (
                await conn.execute(sa.select(Number.id).where(Number.e164 == did))
            ).scalar()
            await conn.execute(
                sa.update(ForwardingDestination)
                .where(ForwardingDestination.number_id == number_id)
                .values(target=target)
            )
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plans", description=__doc__)
    parser.add_argument("--numbers", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="callcontrol-bench-plans-"))
    print(f"bench.plans: work folder {workdir}; {machine()}; db {args.db}", flush=True)
    with database(args.db, workdir) as url:
        began = time.monotonic()
        account_id = Seeder(url).account(balance_minor=100_000)  # through the ledger
        asyncio.run(_seed(url, args.numbers, account_id))
        print(f"bench.plans: {args.numbers} DIDs seeded in {time.monotonic() - began:.1f} s")
        with asterisk_sandbox(default_config()) as sandbox:
            engine = agi_engine_process(sandbox, url, workdir)
            family = app_variable(PLANS_FAMILY, engine.env["CALLCONTROL_ARI__APP"])
            started = time.monotonic()
            engine.start(timeout_s=60)
            assert engine.proc is not None
            while not engine.health().get("plans_vouched"):
                if time.monotonic() - started > 600:
                    print("bench.plans: not vouched within 600 s", file=sys.stderr)
                    engine.stop()
                    return 1
                time.sleep(0.05)
            synced_s = time.monotonic() - started
            sync_cpu = cpu_seconds(engine.proc.pid)
            entries = sandbox.cli(f"database show {family}").count(f"/{family}/")
            idle_from = cpu_seconds(engine.proc.pid)
            time.sleep(10)
            idle = (cpu_seconds(engine.proc.pid) - idle_from) / 10
            latencies: list[float] = []
            for i in range(args.changes):
                did = did_of(i * max(1, args.numbers // max(1, args.changes)))
                target = f"sip:moved{i}@127.0.0.4:5080"
                changed = time.monotonic()
                asyncio.run(_retarget(url, did, target))
                while target not in sandbox.cli(f"database get {family} {did}"):
                    if time.monotonic() - changed > 10:
                        break
                    time.sleep(0.01)
                latencies.append(time.monotonic() - changed)
            engine.stop()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print()
    print(f"machine: {machine()}; db {args.db}; {args.numbers} DIDs")
    print(f"first push: vouched {synced_s:.1f} s after the engine started "
          f"(engine CPU since its start {sync_cpu:.1f} s); {entries} AstDB entries")  # fmt: skip
    print(f"following the change log with nothing changing: {idle * 100:.1f} % of a core")
    worst = latencies[-1]
    print(
        f"a change to AstDB ({len(latencies)} changes, polled every 10 ms plus a CLI call): "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
