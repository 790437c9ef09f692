"""The database goes away under live calls, through real Asterisk, SIPp and the
run's database; nothing is lost.

20 calls are bridged (10 to a SIP URI, 10 to a PSTN number, held 9 s by the far
ends), then the database becomes unavailable and every one of those calls ends
while it is away:

- PostgreSQL: the server is stopped (``stop_server``: fast shutdown, sessions
  cut). A new call meanwhile gets **503** (Q.850 34: the number cannot be
  read), not 603;
- SQLite: another connection holds the file's write lock (``BEGIN
  EXCLUSIVE``). Reads still work (WAL), so a new call meanwhile is answered;
  every write waits on the lock.

The calls' CDRs go to the engine's spool (its depth shows in /metrics); when the
database is back they are replayed: every call has exactly one answered CDR and
each PSTN call exactly one charge; the spool is empty again; nothing is left in
Asterisk.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.asterisk import AsteriskSandbox
from support.data import Seeder
from support.engine import EngineProcess
from support.sipp import Sipp
from test_engine_faults import (
    CALLS,
    FAR_A,
    PROBE,
    Load,
    assert_nothing_left,
    assert_one_answered_cdr_per_call,
    our_bridges,
    wait_bridged,
)

from callcontrol.domain.vocabulary import DestinationType

pytestmark = pytest.mark.e2e

CDR_DEPTH = 'callcontrol_spool_depth{kind="cdr"}'


class DatabaseOutage:
    """Makes the run's database unavailable to the engine, and brings it back."""

    def __init__(self, backend: str, databases: Any, db_url: str) -> None:
        self.backend = backend
        self._cluster = databases.cluster
        self._path = db_url.split("///", 1)[1] if backend == "sqlite" else None
        self._locker: sqlite3.Connection | None = None

    def begin(self) -> None:
        if self._cluster is not None:
            self._cluster.stop_server()
            return
        assert self._path is not None
        self._locker = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        self._locker.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self._cluster is not None:
            self._cluster.start_server()
            return
        locker, self._locker = self._locker, None
        if locker is not None:
            locker.execute("ROLLBACK")
            locker.close()


def spool_samples(engine: EngineProcess) -> dict[str, float]:
    """``callcontrol_spool_*`` samples of /metrics, by name and kind."""
    samples = {}
    for line in engine.metrics().splitlines():
        if line.startswith("callcontrol_spool_"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def wait_no_bridge(asterisk: AsteriskSandbox, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while our_bridges(asterisk) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert our_bridges(asterisk) == [], "calls still bridged"


def new_call(workdir: Path, did: str, *, expected: int | None) -> tuple[bool, float, str]:
    """One call from the carrier: answered (``expected=None``) or rejected with ``expected``."""
    if expected is None:
        caller = Sipp(
            "bench_caller_forward.xml", PROBE, 5074, workdir, remote="127.0.0.1:5060",
            service=did.lstrip("+"), timeout_s=10, media_port=6200,
        )  # fmt: skip
    else:
        caller = Sipp(
            "caller_expect_code.xml", PROBE, 5074, workdir, remote="127.0.0.1:5060",
            service=did.lstrip("+"), keys={"caller": "4915112345678"},
            variables={"expected": str(expected)}, timeout_s=10,
        )  # fmt: skip
    began = time.monotonic()
    result = caller.run()
    return result.ok, time.monotonic() - began, result.describe()


@pytest.fixture
def load(data: Seeder, workdir: Path) -> Iterator[Load]:
    placed = Load(data, workdir)
    yield placed
    placed.stop()


def test_calls_that_end_while_the_database_is_away_keep_their_cdr_and_charge_exactly_once(
    engine: EngineProcess,
    asterisk: AsteriskSandbox,
    data: Seeder,
    load: Load,
    workdir: Path,
    db_backend: str,
    test_databases: Any,
    db_url: str,
) -> None:
    probe_did = data.number(
        data.account(), destinations=[(DestinationType.SIP_URI, f"sip:bob@{FAR_A}:5082", 10)]
    )
    probe_far = Sipp("bench_far_answer_bye.xml", FAR_A, 5082, workdir)
    outage = DatabaseOutage(db_backend, test_databases, db_url)
    load.start()
    wait_bridged(asterisk, 2 * CALLS)
    outage.begin()
    try:
        if db_backend == "postgresql":
            # The number cannot be read: a retryable 503, so the carrier tries elsewhere.
            ok, seconds, described = new_call(workdir, probe_did, expected=503)
        else:
            probe_far.start().wait_ready()  # reads go on under SQLite's write lock (WAL)
            ok, seconds, described = new_call(workdir, probe_did, expected=None)
        assert ok, described
        outcome = "503" if db_backend == "postgresql" else "answered"
        print(f"new call during the outage: {outcome} in {seconds * 1000:.0f} ms (with SIPp start)")
        wait_no_bridge(asterisk)  # every call of the load ended while the database was away
        during = spool_samples(engine)
        assert during[CDR_DEPTH] >= 2 * CALLS, during
    finally:
        outage.end()
    back = time.monotonic()
    deadline = back + 20
    while time.monotonic() < deadline:
        after = spool_samples(engine)
        if after[CDR_DEPTH] == 0:
            break
        time.sleep(0.05)
    drained_s = time.monotonic() - back
    assert after[CDR_DEPTH] == 0, after
    held = during[CDR_DEPTH]
    print(f"spool: {held:.0f} CDRs held, empty {drained_s:.2f} s after the database was back")
    load.finish()
    assert_one_answered_cdr_per_call(data, load)
    assert after['callcontrol_spool_replayed_total{kind="cdr"}'] >= 2 * CALLS, after
    probe_cdrs = data.cdrs_for(probe_did)
    assert len(probe_cdrs) == 1, probe_cdrs
    if db_backend == "postgresql":
        assert probe_cdrs[0]["reject_reason"] == "lookup_failed"
        assert probe_cdrs[0]["sip_code"] == 503
    else:
        assert probe_cdrs[0]["disposition"] == "answered"
        assert probe_far.wait(10).ok
    assert_nothing_left(asterisk)
