"""The local spool and the ports that journal into it, against a real database
(SQLite or PostgreSQL, the run's backend) and a real spool file.

- the journal is durable (a reopened file holds what was appended) and keyed
  (a key appended twice is one entry; a key marked done is not taken again);
- the spooling ledger journals a CDR the database refuses or does not answer
  within its bound, and returns; while the queue holds anything, new CDRs join
  its tail without waiting on the database;
- the replayer replays oldest first, with back-off, and exactly once: a replay
  interrupted after the database committed and before the spool forgot the
  entry (a failure injected there, or the replaying process SIGKILLed there)
  is replayed again without a second CDR or a second charge;
- a voicemail (row, file, mail) journaled while the database is away is
  delivered once when it is back, even when replayed twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import Account, Cdr, LedgerEntry, Number, VoicemailMessage
from callcontrol.domain.call_events import CallRecord, LegRecord
from callcontrol.domain.rating import Rate
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    Disposition,
    LedgerKind,
    LegOutcome,
    NumberKind,
    NumberState,
)
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.notify.retrying_mailer import SpoolingMailer
from callcontrol.notify.voicemail import MailingVoicemailBox
from callcontrol.repositories.call_journal import CallJournal
from callcontrol.repositories.cdrs import SqlCallLedger
from callcontrol.repositories.spool import DATABASE_QUEUE, Spool, SpoolEntry, SpoolKind
from callcontrol.repositories.spool_codec import decode_call, encode_call
from callcontrol.repositories.spooling import (
    Replay,
    SpoolingLedger,
    SpoolingVoicemailBox,
    SpoolReplayer,
    recover_journal,
    replay_calls,
    replay_voicemails,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
RATE = Rate("336", 12, "EUR")


def pstn_call(call_id: str, account_id: int | None, talk_s: int = 61) -> CallRecord:
    leg = LegRecord(
        position=1, type=DestinationType.PSTN, target="+33612345678",
        channel_id=f"{call_id}-leg1", started_at=T0 + timedelta(seconds=1),
        answered_at=T0 + timedelta(seconds=3), ended_at=T0 + timedelta(seconds=3 + talk_s),
        outcome=LegOutcome.ANSWERED, cause=16, billed_seconds=talk_s, rate=RATE,
    )  # fmt: skip
    return CallRecord(
        call_id=call_id, direction=CallDirection.INBOUND, did="+4930123456", number_id=None,
        account_id=account_id, caller="4915112345678", started_at=T0,
        answered_at=T0 + timedelta(seconds=3), ended_at=T0 + timedelta(seconds=3 + talk_s),
        disposition=Disposition.ANSWERED, cause=16, reject_reason=None, answered_position=1,
        ring_ms=2000, talk_ms=talk_s * 1000, legs=(leg,),
    )  # fmt: skip


async def new_account(sessions: async_sessionmaker[AsyncSession], balance: int = 1000) -> int:
    async with sessions() as session, session.begin():
        account = Account(name="Spool test", email="spool@example.invalid", currency="EUR")
        session.add(account)
        await session.flush()
        await ledger.post(
            session, account_id=account.id, kind=LedgerKind.TOP_UP, amount_minor=balance,
            currency="EUR",
        )  # fmt: skip
        return account.id


async def new_number(sessions: async_sessionmaker[AsyncSession], account_id: int) -> int:
    async with sessions() as session, session.begin():
        number = Number(
            e164="+4930999001", country_code=49, region="DE", kind=NumberKind.VOICE,
            state=NumberState.ACTIVE, account_id=account_id, monthly_fee_minor=0,
            setup_fee_minor=0, currency="EUR",
        )  # fmt: skip
        session.add(number)
        await session.flush()
        return number.id


async def call_charges(sessions: async_sessionmaker[AsyncSession], account_id: int) -> list[int]:
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(LedgerEntry.amount_minor).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == LedgerKind.CALL_CHARGE
            )
        )
        return list(rows)


async def balance(sessions: async_sessionmaker[AsyncSession], account_id: int) -> int:
    async with sessions() as session:
        value = await session.scalar(
            sa.select(Account.balance_minor).where(Account.id == account_id)
        )
        assert value is not None
        return value


async def cdr_count(sessions: async_sessionmaker[AsyncSession], call_id: str) -> int:
    async with sessions() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).select_from(Cdr).where(Cdr.id == call_id)
        )
        return int(count or 0)


@pytest.fixture
async def spool(tmp_path: Path) -> Spool:
    opened = Spool(tmp_path / "spool.db")
    await opened.open()
    return opened


class DatabaseAway:
    """A ledger whose database refuses connections."""

    def __init__(self) -> None:
        self.calls = 0

    async def record_call(self, record: CallRecord) -> None:
        self.calls += 1
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")


class DatabaseHanging:
    """A ledger whose database accepts the connection and never answers."""

    async def record_call(self, record: CallRecord) -> None:
        await asyncio.sleep(3600)


class Crash(BaseException):
    """Stands for the process dying at this point (not an ``Exception``: nothing catches it)."""


class CrashingSpool(Spool):
    """A spool whose process dies right after the target committed, before the spool forgets."""

    async def remove(
        self, entries: Sequence[SpoolEntry], *, done: bool = False, replayed: bool = False
    ) -> None:
        raise Crash


def replayer(spool: Spool, replays: dict[SpoolKind, Replay]) -> SpoolReplayer:
    return SpoolReplayer(
        spool=spool, kinds=DATABASE_QUEUE, replay=replays.__getitem__, retry_min_s=0.01,
        retry_max_s=0.05, poll_s=0.05,
    )  # fmt: skip


# -- the journal ---------------------------------------------------------------


async def test_an_appended_entry_is_on_disk_and_a_key_is_journaled_once(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    first = Spool(path)
    await first.open()
    assert await first.append(SpoolKind.CDR, "cdr:a", b"one")
    assert not await first.append(SpoolKind.CDR, "cdr:a", b"again")  # same key: one entry
    assert await first.append(SpoolKind.MAIL, "mail:<m1>", b"mail", None)
    # A second process opening the same file (no close: as after a crash) sees both.
    second = Spool(path)
    await second.open()
    assert second.depth.held[SpoolKind.CDR] == 1 and second.depth.total == 2
    [entry] = await second.oldest([SpoolKind.CDR])
    assert (entry.key, entry.payload) == ("cdr:a", b"one")
    await second.remove([entry], done=True)
    assert not await second.append(SpoolKind.CDR, "cdr:a", b"late")  # done: not taken again
    await first.close()
    await second.close()


async def test_a_spool_holding_entries_for_another_database_refuses_to_open(
    tmp_path: Path,
) -> None:
    from callcontrol.repositories.spool import SpoolMismatch

    first = Spool(tmp_path / "spool.db", target="postgresql://a/db1")
    await first.open()
    await first.append(SpoolKind.CDR, "cdr:x", b"{}")
    await first.close()
    with pytest.raises(SpoolMismatch, match="1 entries"):
        await Spool(tmp_path / "spool.db", target="postgresql://a/db2").open()


def test_a_call_record_survives_the_codec_field_by_field() -> None:
    record = replace(pstn_call("c.1", 7), caller=None, cause=None)
    assert decode_call(encode_call(record)) == record


# -- the spooling ledger -------------------------------------------------------


async def test_a_cdr_the_database_refuses_is_journaled_and_the_call_goes_on(spool: Spool) -> None:
    away = DatabaseAway()
    ledger_ = SpoolingLedger(away, spool=spool, writes=TaskSupervisor("w"), timeout_s=2.0)
    await ledger_.record_call(pstn_call("call-1", 1))
    assert spool.depth.held[SpoolKind.CDR] == 1
    # The queue is not empty: the next CDR joins its tail without trying the database.
    await ledger_.record_call(pstn_call("call-2", 1))
    assert away.calls == 1 and spool.depth.held[SpoolKind.CDR] == 2
    assert [e.key for e in await spool.oldest(DATABASE_QUEUE, limit=5)] == [
        "cdr:call-1", "cdr:call-2",
    ]  # fmt: skip


async def test_a_database_that_does_not_answer_holds_a_call_no_longer_than_the_bound(
    spool: Spool,
) -> None:
    writes = TaskSupervisor("w")
    ledger_ = SpoolingLedger(DatabaseHanging(), spool=spool, writes=writes, timeout_s=0.3)
    began = time.monotonic()
    await ledger_.record_call(pstn_call("call-slow", 1))
    assert time.monotonic() - began < 1.0
    assert spool.depth.held[SpoolKind.CDR] == 1
    await writes.close()


class DatabaseAnswering:
    """A ledger whose database answers 50 ms after it is asked."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    async def record_call(self, record: CallRecord) -> None:
        await asyncio.sleep(0.05)
        self.stored.append(record.call_id)


async def test_a_bound_that_ran_out_while_the_engine_stood_still_is_given_again(
    spool: Spool,
) -> None:
    """SIGSTOP while a CDR is being written: when the process runs again the
    bound has long run out, yet the database answered; the CDR is stored, not
    spooled (and the calls after it are not sent to the spool behind it)."""
    writes, database = TaskSupervisor("w"), DatabaseAnswering()
    ledger_ = SpoolingLedger(database, spool=spool, writes=writes, timeout_s=0.3)
    writing = asyncio.ensure_future(ledger_.record_call(pstn_call("call-stalled", 1)))
    await asyncio.sleep(0)
    time.sleep(1.5)  # noqa: ASYNC251 - the whole process stands still
    await writing
    assert database.stored == ["call-stalled"]
    assert spool.depth.held[SpoolKind.CDR] == 0
    await writes.close()


async def test_a_cdr_write_blocked_by_a_locked_database_is_journaled_within_the_bound_then_replayed_once(  # noqa: E501
    db_engine: AsyncEngine, db_session: async_sessionmaker[AsyncSession], spool: Spool
) -> None:
    """The real fault: another connection holds the write lock (SQLite ``BEGIN
    EXCLUSIVE``, PostgreSQL ``LOCK TABLE``). The call's task returns within the
    bound; when the lock goes, the write that was left running and the replay
    race, and the call is still stored and charged exactly once."""
    account = await new_account(db_session)
    writes = TaskSupervisor("w")
    sql = SqlCallLedger(sessions=db_session, linger_s=0)
    spooling = SpoolingLedger(sql, spool=spool, writes=writes, timeout_s=0.5)
    async with db_engine.connect() as locker:
        if db_engine.dialect.name == "sqlite":
            raw = await locker.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute("BEGIN EXCLUSIVE")
        else:
            await locker.execute(sa.text("BEGIN"))
            await locker.execute(sa.text("LOCK TABLE cdrs IN ACCESS EXCLUSIVE MODE"))
        began = time.monotonic()
        await spooling.record_call(pstn_call("call-locked", account))
        assert time.monotonic() - began < 1.5
        assert spool.depth.held[SpoolKind.CDR] == 1
        if db_engine.dialect.name == "sqlite":
            await driver.execute("ROLLBACK")
        else:
            await locker.execute(sa.text("ROLLBACK"))
    replays = {SpoolKind.CDR: replay_calls(SqlCallLedger(sessions=db_session, linger_s=0))}
    assert await replayer(spool, replays).replay_once(await spool.oldest(DATABASE_QUEUE))
    await writes.drain(10.0)
    assert spool.depth.total == 0
    assert await cdr_count(db_session, "call-locked") == 1
    assert await call_charges(db_session, account) == [-13]


# -- replay ----------------------------------------------------------------------


@dataclass
class Recorder:
    seen: list[str] = field(default_factory=list)
    fail_first: int = 0

    def replay(self, kind: SpoolKind) -> Replay:
        async def run(entries: Sequence[SpoolEntry]) -> list[BaseException | None]:
            results: list[BaseException | None] = []
            for entry in entries:
                if self.fail_first > 0:
                    self.fail_first -= 1
                    results.append(OSError("database away"))
                else:
                    self.seen.append(entry.key)
                    results.append(None)
            return results

        return run


async def test_the_replayer_replays_oldest_first_across_cdrs_and_voicemail_and_retries(
    spool: Spool,
) -> None:
    for key, kind in [("cdr:1", SpoolKind.CDR), ("voicemail:1", SpoolKind.VOICEMAIL),
                      ("cdr:2", SpoolKind.CDR), ("mail:<x>", SpoolKind.MAIL)]:  # fmt: skip
        await spool.append(kind, key, b"{}")
    recorder = Recorder(fail_first=1)  # the database is still away at the first try
    replays = {SpoolKind.CDR: recorder.replay(SpoolKind.CDR),
               SpoolKind.VOICEMAIL: recorder.replay(SpoolKind.VOICEMAIL)}  # fmt: skip
    task = asyncio.create_task(replayer(spool, replays).run())
    try:
        for _ in range(200):
            if spool.pending(DATABASE_QUEUE) == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert recorder.seen == ["cdr:1", "voicemail:1", "cdr:2"]
    assert spool.depth.held[SpoolKind.MAIL] == 1  # the mail queue is another replayer's
    assert spool.replayed[SpoolKind.CDR] == 2 and spool.replayed[SpoolKind.VOICEMAIL] == 1


async def test_an_entry_the_database_keeps_rejecting_is_kept_as_dead_and_unblocks_the_queue(
    db_session: async_sessionmaker[AsyncSession], spool: Spool
) -> None:
    account = await new_account(db_session)
    await spool.append(SpoolKind.CDR, "cdr:bad", encode_call(pstn_call("bad", 999_999)))
    await spool.append(SpoolKind.CDR, "cdr:good", encode_call(pstn_call("good", account)))
    replays = {SpoolKind.CDR: replay_calls(SqlCallLedger(sessions=db_session, linger_s=0))}
    replaying = SpoolReplayer(
        spool=spool, kinds=DATABASE_QUEUE, replay=replays.__getitem__, retry_min_s=0.01,
        retry_max_s=0.01, max_rejections=2, batch=1,
    )  # fmt: skip
    for _ in range(4):
        entries = await spool.oldest(DATABASE_QUEUE, limit=1)
        if entries:
            await replaying.replay_once(entries)
    assert await cdr_count(db_session, "good") == 1
    assert spool.depth.held[SpoolKind.CDR] == 1 and spool.depth.dead[SpoolKind.CDR] == 1


async def test_a_replay_interrupted_after_the_commit_does_not_charge_twice(
    db_session: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    account = await new_account(db_session)
    path = tmp_path / "spool.db"
    crashing = CrashingSpool(path)
    await crashing.open()
    await crashing.append(SpoolKind.CDR, "cdr:call-x", encode_call(pstn_call("call-x", account)))
    replays = {SpoolKind.CDR: replay_calls(SqlCallLedger(sessions=db_session, linger_s=0))}
    with pytest.raises(Crash):
        await replayer(crashing, replays).replay_once(await crashing.oldest(DATABASE_QUEUE))
    assert await call_charges(db_session, account) == [-13]  # committed before the "crash"
    # The restarted engine opens the same spool: the entry is still there, and replayed.
    restarted = Spool(path)
    await restarted.open()
    assert restarted.depth.held[SpoolKind.CDR] == 1
    fresh = {SpoolKind.CDR: replay_calls(SqlCallLedger(sessions=db_session, linger_s=0))}
    assert await replayer(restarted, fresh).replay_once(await restarted.oldest(DATABASE_QUEUE))
    assert restarted.depth.total == 0
    assert await cdr_count(db_session, "call-x") == 1
    assert await call_charges(db_session, account) == [-13]
    assert await balance(db_session, account) == 1000 - 13


KILLED_REPLAY = """
import asyncio, os, signal, sys
from pathlib import Path
from callcontrol.db.engine import create_engine, session_factory
from callcontrol.repositories.cdrs import SqlCallLedger
from callcontrol.repositories.spool import DATABASE_QUEUE, Spool, SpoolKind
from callcontrol.repositories.spooling import SpoolReplayer, replay_calls
from callcontrol.settings import DatabaseSettings

class DieAfterCommit:
    def __init__(self, ledger):
        self.ledger = ledger
    async def record_call(self, record):
        await self.ledger.record_call(record)
        os.kill(os.getpid(), signal.SIGKILL)  # committed; the spool never hears of it

async def main():
    spool = Spool(Path(sys.argv[1]))
    await spool.open()
    engine = create_engine(DatabaseSettings(url=sys.argv[2]))
    ledger = DieAfterCommit(SqlCallLedger(sessions=session_factory(engine), linger_s=0))
    replay = {SpoolKind.CDR: replay_calls(ledger)}
    replayer = SpoolReplayer(spool=spool, kinds=DATABASE_QUEUE, replay=replay.__getitem__,
                             retry_min_s=0.1, retry_max_s=0.1)
    await replayer.replay_once(await spool.oldest(DATABASE_QUEUE))

asyncio.run(main())
"""


async def test_a_replaying_process_killed_after_the_commit_leaves_one_cdr_and_one_charge(
    db_session: async_sessionmaker[AsyncSession], fresh_db_url: str, tmp_path: Path
) -> None:
    account = await new_account(db_session)
    path = tmp_path / "spool.db"
    journal = Spool(path)
    await journal.open()
    await journal.append(SpoolKind.CDR, "cdr:call-k", encode_call(pstn_call("call-k", account)))
    await journal.close()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", KILLED_REPLAY, str(path), fresh_db_url],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert await call_charges(db_session, account) == [-13]
    restarted = Spool(path)
    await restarted.open()
    assert restarted.depth.held[SpoolKind.CDR] == 1  # the kill came before the removal
    replays = {SpoolKind.CDR: replay_calls(SqlCallLedger(sessions=db_session, linger_s=0))}
    assert await replayer(restarted, replays).replay_once(await restarted.oldest(DATABASE_QUEUE))
    assert restarted.depth.total == 0
    assert await cdr_count(db_session, "call-k") == 1
    assert await call_charges(db_session, account) == [-13]
    assert await balance(db_session, account) == 1000 - 13


# -- voicemail -----------------------------------------------------------------------


@dataclass
class Outbox:
    sent: list[EmailMessage] = field(default_factory=list)

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


class BoxAway:
    async def deliver(self, **_: object) -> None:
        raise ConnectionRefusedError(111, "Connect call failed")


async def test_a_voicemail_spooled_while_the_database_is_away_is_delivered_once_with_its_audio(
    db_session: async_sessionmaker[AsyncSession], spool: Spool, tmp_path: Path
) -> None:
    account = await new_account(db_session)
    number = await new_number(db_session, account)
    await SqlCallLedger(sessions=db_session, linger_s=0).record_call(
        replace(pstn_call("vm-call", account), number_id=number)
    )
    audio = b"RIFF" + bytes(range(256)) * 40
    await SpoolingVoicemailBox(BoxAway(), spool=spool).deliver(
        call_id="vm-call", number_id=number, account_id=account, did="+4930999001",
        caller="4915112345678", duration_s=4, audio=audio,
    )  # fmt: skip
    [entry] = await spool.oldest(DATABASE_QUEUE)
    assert entry.attachment == audio  # the audio is in the spool, fsynced
    outbox = Outbox()
    media = tmp_path / "media"
    box = MailingVoicemailBox(
        sessions=db_session, media_root=media, mailer=SpoolingMailer(outbox, spool=spool)
    )
    replays = {SpoolKind.VOICEMAIL: replay_voicemails(box)}
    # Replayed twice: the first replay "crashed" after delivering, before the removal.
    crashing = CrashingSpool(spool.path)
    await crashing.open()
    crash_box = MailingVoicemailBox(
        sessions=db_session, media_root=media, mailer=SpoolingMailer(outbox, spool=crashing)
    )
    with pytest.raises(Crash):
        await replayer(crashing, {SpoolKind.VOICEMAIL: replay_voicemails(crash_box)}).replay_once(
            [entry]
        )
    assert await replayer(spool, replays).replay_once(await spool.oldest(DATABASE_QUEUE))
    async with db_session() as session:
        rows = list(
            await session.scalars(
                sa.select(VoicemailMessage).where(VoicemailMessage.cdr_id == "vm-call")
            )
        )
    assert len(rows) == 1 and rows[0].size_bytes == len(audio)
    assert (media / rows[0].stored_name).read_bytes() == audio
    assert len(outbox.sent) == 1, [m["Message-ID"] for m in outbox.sent]
    assert outbox.sent[0]["Message-ID"] == "<voicemail.vm-call@callcontrol.invalid>"
    assert spool.depth.total == 0


class BoxHanging:
    async def deliver(self, **_: object) -> None:
        await asyncio.sleep(3600)


async def test_a_voicemail_delivery_cancelled_by_a_stop_keeps_the_audio_in_the_spool(
    spool: Spool,
) -> None:
    box = SpoolingVoicemailBox(BoxHanging(), spool=spool)
    delivering = box.deliver(
        call_id="vm-stop", number_id=1, account_id=1, did="+4930999001", caller=None,
        duration_s=3, audio=b"RIFF-audio",
    )  # fmt: skip
    delivery = asyncio.create_task(delivering)
    await asyncio.sleep(0.05)
    delivery.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivery
    [entry] = await spool.oldest(DATABASE_QUEUE)
    assert (entry.key, entry.attachment) == ("voicemail:vm-stop", b"RIFF-audio")


async def test_a_replay_that_loses_the_race_to_a_late_live_write_counts_as_done(
    spool: Spool,
) -> None:
    """The live write that outlived its wait committed first: the replay's insert
    hits the primary key; written again, the ledger finds the CDR and skips it."""
    import sqlalchemy.exc as sa_exc

    @dataclass
    class RacedLedger:
        calls: int = 0

        async def record_call(self, record: CallRecord) -> None:
            self.calls += 1
            if self.calls == 1:
                raise sa_exc.IntegrityError("INSERT INTO cdrs", {}, Exception("pk_cdrs"))

    raced = RacedLedger()
    await spool.append(SpoolKind.CDR, "cdr:raced", encode_call(pstn_call("raced", 1)))
    replays = {SpoolKind.CDR: replay_calls(raced)}
    assert await replayer(spool, replays).replay_once(await spool.oldest(DATABASE_QUEUE))
    assert raced.calls == 2 and spool.depth.total == 0


# -- the write-ahead call journal ------------------------------------------------------

KILLED_IN_THE_BATCH_WINDOW = """
import asyncio, os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from callcontrol.db.engine import create_engine, session_factory
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.repositories.call_journal import CallJournal
from callcontrol.repositories.cdrs import SqlCallLedger
from callcontrol.repositories.spool import Spool
from callcontrol.repositories.spool_codec import decode_call
from callcontrol.repositories.spooling import SpoolingLedger
from callcontrol.settings import DatabaseSettings

async def main():
    spool = Spool(Path(sys.argv[1]))
    await spool.open()
    engine = create_engine(DatabaseSettings(url=sys.argv[2]))
    # A long group-commit window: the CDRs wait in memory when the engine dies.
    sql = SqlCallLedger(sessions=session_factory(engine), linger_s=30)
    ledger = SpoolingLedger(sql, spool=spool, writes=TaskSupervisor("w"), timeout_s=60,
                            journal=CallJournal.beside(Path(sys.argv[1])))
    records = [decode_call(line.encode()) for line in sys.argv[3:]]
    tasks = [asyncio.create_task(ledger.record_call(r)) for r in records]
    await asyncio.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_cdrs_waiting_for_their_batch_when_the_engine_is_killed_are_recovered_once(
    db_session: async_sessionmaker[AsyncSession], fresh_db_url: str, tmp_path: Path
) -> None:
    account = await new_account(db_session)
    path = tmp_path / "spool.db"
    calls = [pstn_call(f"call-w{n}", account) for n in range(3)]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", KILLED_IN_THE_BATCH_WINDOW, str(path), fresh_db_url,
         *(encode_call(c).decode() for c in calls)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert all([await cdr_count(db_session, c.call_id) for c in calls]) is False
    # The next engine starts: the journal's records go to the spool and are replayed.
    for attempt in range(2):  # the second start finds nothing more to do
        restarted = Spool(path)
        await restarted.open()
        journal = CallJournal.beside(path)
        assert await recover_journal(journal, restarted) == (3 if attempt == 0 else 0)
        replays = {SpoolKind.CDR: replay_calls(SqlCallLedger(sessions=db_session, linger_s=0))}
        if restarted.depth.total:
            assert await replayer(restarted, replays).replay_once(
                await restarted.oldest(DATABASE_QUEUE, limit=10)
            )
        assert restarted.depth.total == 0
        await restarted.close()
    for call in calls:
        assert await cdr_count(db_session, call.call_id) == 1
    assert await call_charges(db_session, account) == [-13, -13, -13]


async def test_a_recovered_record_already_in_the_database_is_not_stored_twice(
    db_session: async_sessionmaker[AsyncSession], spool: Spool, tmp_path: Path
) -> None:
    """Killed after the commit but before ``done``: the record is in both places."""
    account = await new_account(db_session)
    folder = tmp_path / "journal"
    killed = CallJournal(folder)
    killed.recover()
    killed.append(pstn_call("call-both", account))  # never marked done: the process "died"
    await SqlCallLedger(sessions=db_session, linger_s=0).record_call(
        pstn_call("call-both", account)
    )
    journal = CallJournal(folder)
    assert await recover_journal(journal, spool) == 1
    replays = {SpoolKind.CDR: replay_calls(SqlCallLedger(sessions=db_session, linger_s=0))}
    assert await replayer(spool, replays).replay_once(await spool.oldest(DATABASE_QUEUE))
    assert await cdr_count(db_session, "call-both") == 1
    assert await call_charges(db_session, account) == [-13]


def test_the_journal_keeps_only_segments_with_records_not_yet_safe(tmp_path: Path) -> None:
    journal = CallJournal(tmp_path, segment_records=2)
    assert journal.recover() == []
    tokens = [journal.append(pstn_call(f"c{n}", 1)) for n in range(5)]  # segments 1, 1, 2, 2, 3
    assert len(list(tmp_path.glob("*.journal"))) == 3
    for token in tokens[:2]:
        journal.done(token)
    assert len(list(tmp_path.glob("*.journal"))) == 2  # segment 1 is safe: gone
    journal.done(tokens[4])
    assert journal.outstanding == 2
    journal.close()  # a clean stop keeps what is not safe yet
    left = CallJournal(tmp_path).recover()
    assert [r.call_id for r in left] == ["c2", "c3"]


def test_a_torn_line_is_skipped_and_the_other_records_are_recovered(tmp_path: Path) -> None:
    journal = CallJournal(tmp_path)
    journal.recover()
    journal.append(pstn_call("whole", 1))
    journal.close()
    [segment] = tmp_path.glob("*.journal")
    with segment.open("ab") as handle:
        handle.write(encode_call(pstn_call("torn", 1))[:40])  # a write cut short by a power cut
    assert [r.call_id for r in CallJournal(tmp_path).recover()] == ["whole"]
