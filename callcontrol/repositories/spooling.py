"""Nothing is lost while the database is away: the engine's ports, spooled.

``SpoolingLedger`` (a ``CallLedger``) and ``SpoolingVoicemailBox`` (a
``VoicemailBox``) wrap the database adapters; the composition root puts them
in front. The rules they keep:

- Before anything else the record is written to the ``CallJournal`` (a plain
  file, ``call_journal.py``), and marked done there once it is committed or
  spooled: an engine killed in between leaves it for the next one to recover.
- A CDR is handed to the real ledger and waited for at most ``timeout_s``
  (2 s): a call's task is never held longer. If the write failed or is still
  running, the record is journaled in the spool and ``record_call`` returns;
  a write still running goes on in the background and, if it commits, the
  replay finds the CDR there and skips it (the CDR id is the call id; its
  charges have idempotency keys ``call:<cdr>:<leg>`` and are committed in the
  same transaction).
- While the database queue holds anything, new work joins its tail instead of
  trying the database first: replay stays oldest-first (a voicemail row needs
  its CDR written before it) and a database that is down costs a call no wait.
- A voicemail's audio, once fetched from Asterisk, is either delivered (file,
  row, mail) or in the spool beside its metadata, fsynced, before the
  recording is deleted from Asterisk.
- ``SpoolReplayer`` replays a queue oldest first with exponential back-off
  (``retry_min_s`` .. ``retry_max_s``); an entry is removed only after its
  work committed, so a crash in between replays it again, idempotently. An
  entry the target keeps *rejecting* (a constraint, bad data: not an outage)
  is marked dead after ``max_rejections`` tries: kept, counted, logged, and no
  longer blocking the queue.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

import sqlalchemy.exc as sa_exc
import structlog

from callcontrol.domain.call_events import CallRecord
from callcontrol.engine.ports import STALL_MARGIN_S, CallLedger, VoicemailBox
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.repositories.call_journal import CallJournal
from callcontrol.repositories.spool import DATABASE_QUEUE, Spool, SpoolEntry, SpoolKind
from callcontrol.repositories.spool_codec import (
    VoicemailWork,
    decode_call,
    decode_voicemail,
    encode_call,
    encode_voicemail,
)

log = structlog.get_logger(__name__)

Replay = Callable[[Sequence[SpoolEntry]], Awaitable[list[BaseException | None]]]
"""Carries out a run of entries of one kind; one result per entry (None: done)."""


class NotTried(Exception):
    """A replay result: this entry was not attempted (an older one failed first)."""


def is_rejection(exc: BaseException) -> bool:
    """The target refused this entry (it would refuse it again), as opposed to
    being unreachable, slow or locked (an outage: retried forever)."""
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return True
    return isinstance(exc, ValueError | TypeError | KeyError | AttributeError)


class SpoolReplayer:
    """Replays one queue of the spool whenever it holds something."""

    def __init__(
        self,
        *,
        spool: Spool,
        kinds: Collection[SpoolKind],
        replay: Callable[[SpoolKind], Replay],
        retry_min_s: float,
        retry_max_s: float,
        max_rejections: int = 5,
        batch: int = 200,
        poll_s: float = 1.0,
        remember_done: bool = False,
        name: str = "spool",
    ) -> None:
        self._spool = spool
        self._kinds = frozenset(kinds)
        self._replay = replay
        self._min, self._max = retry_min_s, retry_max_s
        self._max_rejections = max_rejections
        self._batch = batch
        self._poll_s = poll_s
        self._remember_done = remember_done
        self.name = name
        self._wake = asyncio.Event()
        spool.on_append(self._appended)

    def _appended(self, kind: SpoolKind) -> None:
        if kind in self._kinds:
            self._wake.set()

    async def run(self) -> None:
        backoff = self._min
        while True:
            entries = await self._spool.oldest(self._kinds, limit=self._batch)
            if not entries:
                # Also polls: another process (``callcontrol billing run``) may append.
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)
                except TimeoutError:
                    pass
                continue
            if await self.replay_once(entries):
                backoff = self._min
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max)

    async def replay_once(self, entries: Sequence[SpoolEntry]) -> bool:
        """Replay the leading run of one kind; True if all of it was done."""
        kind = entries[0].kind
        run = _leading_run(entries)
        results = await self._replay(kind)(run)
        done = [entry for entry, error in zip(run, results, strict=True) if error is None]
        if done:
            await self._spool.remove(done, done=self._remember_done, replayed=True)
            log.info("spool_replayed", queue=self.name, kind=kind.value, entries=len(done))
        all_done = len(done) == len(run)
        for entry, error in zip(run, results, strict=True):
            if error is None or isinstance(error, NotTried):
                continue
            dead = is_rejection(error) and entry.attempts + 1 >= self._max_rejections
            await self._spool.failed(entry, f"{type(error).__name__}: {error}", dead=dead)
            if dead:
                log.error(
                    "spool_entry_dead", key=entry.key, attempts=entry.attempts + 1,
                    error=str(error)[:300],
                )  # fmt: skip
            elif entry is run[0]:
                log.warning(
                    "spool_replay_failed", queue=self.name, key=entry.key, error=str(error)[:300]
                )
        return all_done


def _leading_run(entries: Sequence[SpoolEntry]) -> list[SpoolEntry]:
    kind = entries[0].kind
    run = []
    for entry in entries:
        if entry.kind is not kind:
            break
        run.append(entry)
    return run


class SpoolingLedger:
    """A ``CallLedger`` that journals a CDR the database cannot take within ``timeout_s``."""

    def __init__(
        self,
        ledger: CallLedger,
        *,
        spool: Spool,
        writes: TaskSupervisor,
        timeout_s: float,
        journal: CallJournal | None = None,
    ) -> None:
        self._ledger = ledger
        self._spool = spool
        self._writes = writes
        self._timeout_s = timeout_s
        self._journal_file = journal

    def without_journal(self) -> SpoolingLedger:
        """The same ledger for a caller whose source is its own journal (it
        hands a record over again after a crash): no write-ahead copy."""
        return SpoolingLedger(
            self._ledger, spool=self._spool, writes=self._writes, timeout_s=self._timeout_s
        )

    async def record_call(self, record: CallRecord) -> None:
        """The record is in the write-ahead journal (if any) until it is committed
        or spooled: an engine killed meanwhile leaves it there for ``recover``."""
        if self._journal_file is None:
            await self._record(record)
            return
        token = self._journal_file.append(record)
        await self._record(record)
        self._journal_file.done(token)  # not reached if the spool itself failed

    async def _record(self, record: CallRecord) -> None:
        if self._spool.pending(DATABASE_QUEUE):
            await self._journal(record, "the spool is not empty")
            return
        attempt = self._writes.spawn(self._attempt(record), name=f"cdr-{record.call_id}")
        try:
            done = await self._bounded(attempt)
        except asyncio.CancelledError:
            # Stopping: the write may still commit, but the record must not depend on it.
            await asyncio.shield(self._writes.spawn(self._journal(record, "cancelled")))
            raise
        if done:
            error = attempt.result()
            if error is None:
                return
            reason = f"{type(error).__name__}: {error}"
        else:
            reason = f"no answer from the database within {self._timeout_s} s"
        await self._journal(record, reason)

    async def _bounded(self, attempt: asyncio.Task[BaseException | None]) -> bool:
        """Whether the write finished within the bound; a bound that ran out over
        ``STALL_MARGIN_S`` late (this process stood still, not the database) is
        given once more, so a stall does not send every ending call to the spool."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        done, _ = await asyncio.wait({attempt}, timeout=self._timeout_s)
        if not done and loop.time() - started - self._timeout_s > STALL_MARGIN_S:
            done, _ = await asyncio.wait({attempt}, timeout=self._timeout_s)
        return bool(done)

    async def _attempt(self, record: CallRecord) -> BaseException | None:
        """The database write; its failure is a value (a timed-out write may fail later,
        unobserved: the record is in the spool by then)."""
        try:
            await self._ledger.record_call(record)
        except Exception as exc:  # any failure: the record goes to the spool
            return exc
        return None

    async def _journal(self, record: CallRecord, reason: str) -> None:
        await self._spool.append(SpoolKind.CDR, f"cdr:{record.call_id}", encode_call(record))
        log.warning("cdr_spooled", call_id=record.call_id, reason=reason[:300])


async def recover_journal(journal: CallJournal, spool: Spool) -> int:
    """At start-up: the records a killed engine left in its write-ahead journal go
    into the spool (a key already there is a no-op), whose replay writes each CDR
    that is not in the database yet. Returns how many records were found."""
    records = journal.recover()
    for record in records:
        await spool.append(SpoolKind.CDR, f"cdr:{record.call_id}", encode_call(record))
    journal.discard_recovered()
    return len(records)


def replay_calls(ledger: CallLedger) -> Replay:
    """Replays spooled CDRs through the real ledger, concurrently (it groups them
    into one transaction) and idempotently (a CDR already there is skipped)."""

    async def replay(entries: Sequence[SpoolEntry]) -> list[BaseException | None]:
        async def one(entry: SpoolEntry) -> BaseException | None:
            try:
                record = decode_call(entry.payload)
                try:
                    await ledger.record_call(record)
                except sa_exc.IntegrityError:
                    # A write of the same CDR that outlived its call's wait may have
                    # committed meanwhile (the primary key refused ours): written again,
                    # the ledger finds it and skips it; a real violation fails again.
                    await ledger.record_call(record)
            except Exception as exc:  # reported per entry
                return exc
            return None

        return list(await asyncio.gather(*(one(entry) for entry in entries)))

    return replay


class SpoolingVoicemailBox:
    """A ``VoicemailBox`` that journals a message (audio included) it could not deliver."""

    def __init__(self, box: VoicemailBox, *, spool: Spool) -> None:
        self._box = box
        self._spool = spool

    async def deliver(
        self,
        *,
        call_id: str,
        number_id: int,
        account_id: int | None,
        did: str,
        caller: str | None,
        duration_s: int,
        audio: bytes,
    ) -> None:
        work = VoicemailWork(call_id, number_id, account_id, did, caller, duration_s)
        if not self._spool.pending(DATABASE_QUEUE):
            try:
                await deliver_work(self._box, work, audio)
                return
            except asyncio.CancelledError:
                # Stopping mid-delivery: the audio is kept (a replay is idempotent).
                await asyncio.shield(self._journal(work, audio, "cancelled"))
                raise
            except Exception as exc:  # any failure: the message goes to the spool
                reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "the spool is not empty"
        await self._journal(work, audio, reason)

    async def _journal(self, work: VoicemailWork, audio: bytes, reason: str) -> None:
        key = f"voicemail:{work.call_id}"
        await self._spool.append(SpoolKind.VOICEMAIL, key, encode_voicemail(work), audio)
        log.warning(
            "voicemail_spooled", call_id=work.call_id, bytes=len(audio), reason=reason[:300]
        )


async def deliver_work(box: VoicemailBox, work: VoicemailWork, audio: bytes) -> None:
    await box.deliver(
        call_id=work.call_id,
        number_id=work.number_id,
        account_id=work.account_id,
        did=work.did,
        caller=work.caller,
        duration_s=work.duration_s,
        audio=audio,
    )


def replay_voicemails(box: VoicemailBox) -> Replay:
    """Replays spooled messages one by one (the box is idempotent per call id)."""

    async def replay(entries: Sequence[SpoolEntry]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for entry in entries:
            if results and results[-1] is not None:
                results.append(NotTried())
                continue
            try:
                await deliver_work(box, decode_voicemail(entry.payload), entry.attachment or b"")
            except Exception as exc:  # reported per entry
                results.append(exc)
            else:
                results.append(None)
        return results

    return replay


@dataclass(frozen=True, slots=True)
class SpooledPorts:
    """What the composition root puts in front of the engine, and the spool behind them."""

    spool: Spool
    ledger: SpoolingLedger
    voicemail: SpoolingVoicemailBox
