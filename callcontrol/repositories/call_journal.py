"""A write-ahead file of finished calls, so a killed engine loses no CDR.

A call's record is final the moment its last event is handled, but the CDR
is committed some time later: the ledger groups the CDRs of calls ending
together into one transaction (``cdrs.py``, ``LINGER_S``), and the database
round trip itself takes time. An engine SIGKILLed in that window used to take
the record with it (4 of 1,350 CDRs in a ``bench.faults`` kill9 run), and
nothing in Asterisk is left to rebuild it from: the channels are gone.

``CallJournal`` closes the window. The rules it keeps:

- ``append`` writes the record as one line to the current segment file with
  a single ``write()`` before the ledger is even asked, and ``done`` is called
  once the record is safe elsewhere: committed in the database or journaled in
  the spool (``SpoolingLedger``). A ``write()`` that returned is in the
  kernel: it survives the process being killed (not a power cut; the spool,
  fsynced, is what survives that). No fsync here: it would cost every call
  milliseconds.
- A segment takes ``segment_records`` records, then a new one is begun; a
  finished segment is deleted once every record in it is ``done``.
- ``recover`` (at start-up, before any call) reads whatever segments a
  previous engine left and returns their records; the caller journals them
  in the spool, whose replay is idempotent (a CDR already in the database is
  skipped, charges have idempotency keys), then calls ``discard_recovered``.
  So a record is never lost and never counted twice. A line that does not
  decode (a torn write at a power cut) is skipped and logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from callcontrol.domain.call_events import CallRecord
from callcontrol.repositories.spool_codec import decode_call, encode_call

log = structlog.get_logger(__name__)

SEGMENT_RECORDS = 512
_SUFFIX = ".journal"


@dataclass
class _Segment:
    number: int
    path: Path
    fd: int | None
    written: int = 0
    outstanding: int = 0


class CallJournal:
    def __init__(self, folder: Path, *, segment_records: int = SEGMENT_RECORDS) -> None:
        self._folder = folder
        self._segment_records = segment_records
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._recovered: list[Path] = []
        self._next = 1

    @classmethod
    def beside(cls, spool_path: Path) -> CallJournal:
        """The journal folder next to the spool file (``spool.db`` -> ``spool.db.calls/``)."""
        return cls(spool_path.with_name(spool_path.name + ".calls"))

    def recover(self) -> list[CallRecord]:
        """The records a previous engine left un-``done`` (call before the first ``append``)."""
        self._folder.mkdir(parents=True, exist_ok=True)
        records: list[CallRecord] = []
        for path in sorted(self._folder.glob("*" + _SUFFIX), key=_number):
            self._next = max(self._next, _number(path) + 1)
            self._recovered.append(path)
            for line_no, line in enumerate(path.read_bytes().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    records.append(decode_call(line))
                except Exception as exc:  # a torn line: skip it, say so
                    log.error("call_journal_line_unreadable", file=str(path), line=line_no,
                              error=str(exc)[:200])  # fmt: skip
        if records:
            log.warning("call_journal_recovered", records=len(records), files=len(self._recovered))
        return records

    def discard_recovered(self) -> None:
        """The recovered records are safe elsewhere now: their files go."""
        for path in self._recovered:
            path.unlink(missing_ok=True)
        self._recovered.clear()

    def append(self, record: CallRecord) -> int:
        """Write ``record`` (one ``write()``); returns the token for ``done``."""
        segment = self._current
        if segment is None or segment.written >= self._segment_records:
            segment = self._begin()
        line = encode_call(record) + b"\n"
        assert segment.fd is not None
        os.write(segment.fd, line)
        segment.written += 1
        segment.outstanding += 1
        return segment.number

    def done(self, token: int) -> None:
        segment = self._segments.get(token)
        if segment is None:
            return
        segment.outstanding -= 1
        if segment.outstanding <= 0 and segment is not self._current:
            self._drop(segment)

    @property
    def outstanding(self) -> int:
        return sum(s.outstanding for s in self._segments.values())

    def close(self) -> None:
        """At a clean stop: segments with nothing outstanding go; the rest stay for ``recover``."""
        for segment in list(self._segments.values()):
            if segment.outstanding <= 0:
                self._drop(segment)
            elif segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None
        self._current = None

    def _begin(self) -> _Segment:
        self._folder.mkdir(parents=True, exist_ok=True)
        previous = self._current
        number = self._next
        self._next += 1
        path = self._folder / f"{number:08d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        segment = _Segment(number, path, fd)
        self._segments[number] = self._current = segment
        if previous is not None and previous.outstanding <= 0:
            self._drop(previous)
        return segment

    def _drop(self, segment: _Segment) -> None:
        if segment.fd is not None:
            os.close(segment.fd)
            segment.fd = None
        segment.path.unlink(missing_ok=True)
        self._segments.pop(segment.number, None)


def _number(path: Path) -> int:
    stem = path.name[: -len(_SUFFIX)]
    return int(stem) if stem.isdigit() else 0
