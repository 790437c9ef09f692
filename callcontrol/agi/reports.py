"""The hangup reports the FastAGI dialplan appends on the node, read as they come.

The dialplan's hangup handler appends one line per decided call to
``<folder>/callcontrol-agi-<YYYYmmdd-HHMM>.cdr`` (``FILE()`` in append and line
mode: open, one ``write()``, close; the minute is Asterisk's local time). This
costs the call no connection to the engine, and a call that ends while the
engine is down leaves its line all the same: the file is the node's journal of
ended calls, and the engine is its reader. Rules kept here:

- only complete lines (ended by ``\\n``) are taken; a line still being written
  waits for its end;
- what was taken is remembered per file (name, inode, offset) only once the
  caller ``commit``s the batch, in ``<folder>/callcontrol-agi.offsets`` (JSON,
  replaced atomically): a restarted engine goes on where the last one
  committed, and a batch taken but not committed (a crash, a failed CDR write)
  is taken again. Taking a line twice is harmless: a CDR is stored once per
  call id;
- a file is removed once it was committed to its end and has not changed for
  ``keep_s``: its minute is over, and no writer still has it. A line written
  to a removed file's name afterwards (a writer that stood still that long)
  makes a new file, read from its start;
- a file that shrank or whose inode changed is read again from its start;
- a file whose end is a line without its ``\n`` (Asterisk stopped in the
  middle of a ``write()``) unchanged for ``keep_s`` once everything before it
  was committed, is renamed to ``<name>.incomplete`` with a warning: no more
  can come after it, a CDR cannot be made of it, and the file would otherwise
  be kept and read forever. The name leaves it to the operator.

Plain synchronous file I/O on a local folder (a few KB per batch): the
executor calls ``take`` and ``commit`` from its loop.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PREFIX = "callcontrol-agi-"
SUFFIX = ".cdr"
INCOMPLETE_SUFFIX = ".incomplete"
OFFSETS_FILE = "callcontrol-agi.offsets"
_MAX_TAKE_BYTES = 4 * 1024 * 1024
"""At most this much is taken from one file per batch (a backlog is read in steps)."""


def dialplan_report_path(asterisk_folder: str) -> str:
    """The ``FILE()`` path the dialplan appends to (``asterisk_folder`` as Asterisk sees it)."""
    return f"{asterisk_folder.rstrip('/')}/{PREFIX}${{STRFTIME(,,%Y%m%d-%H%M)}}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class FileMark:
    """How far a report file was read: its inode, and the offset after its last line."""

    inode: int
    offset: int


@dataclass(frozen=True, slots=True)
class _Tail:
    """A file's end that is not a whole line: from ``start`` to ``size``."""

    inode: int
    start: int
    size: int


@dataclass(frozen=True, slots=True)
class ReportBatch:
    """Lines taken, and where each file stands once they are committed."""

    lines: list[str]
    marks: dict[str, FileMark] = field(default_factory=dict)
    """file name -> its mark after the batch's last line."""


class HangupReports:
    def __init__(
        self, folder: Path, *, keep_s: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._folder = folder
        self._keep_s = keep_s
        self._clock = clock
        self._marks: dict[str, FileMark] = {}
        self._tails: dict[str, _Tail] = {}
        """file name -> its end that is not a whole line (as last seen by ``take``)."""
        self._loaded = False
        self._dirty = False

    @property
    def folder(self) -> Path:
        return self._folder

    def take(self) -> ReportBatch:
        """The complete lines not committed yet, oldest file first."""
        self._load()
        lines: list[str] = []
        marks: dict[str, FileMark] = {}
        self._tails = {}
        for path in sorted(self._folder.glob(f"{PREFIX}*{SUFFIX}")):
            try:
                with path.open("rb") as handle:
                    stat = os.fstat(handle.fileno())
                    mark = self._marks.get(path.name)
                    start = mark.offset if mark and mark.inode == stat.st_ino else 0
                    if start > stat.st_size:  # the file was cut or replaced: from its start
                        start = 0
                    if start == stat.st_size:
                        continue
                    handle.seek(start)
                    chunk = handle.read(_MAX_TAKE_BYTES)
            except FileNotFoundError:
                continue
            end = chunk.rfind(b"\n") + 1
            if start + end < stat.st_size and start + len(chunk) == stat.st_size:
                # The file ends in a line without its "\n": being written, or cut off.
                self._tails[path.name] = _Tail(stat.st_ino, start + end, stat.st_size)
            if end == 0:
                continue  # a line being written: wait for its end
            lines += chunk[:end].decode("utf-8", errors="replace").splitlines()
            marks[path.name] = FileMark(stat.st_ino, start + end)
        return ReportBatch(lines, marks)

    def commit(self, batch: ReportBatch) -> None:
        """Remember the batch as done, then remove the files that are finished."""
        self._marks |= batch.marks
        self._remove_finished()
        if batch.marks or self._dirty:
            self._save()

    def _remove_finished(self) -> None:
        now = self._clock()
        self._set_aside_incomplete(now)
        for name, mark in list(self._marks.items()):
            path = self._folder / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                del self._marks[name]
                self._dirty = True
                continue
            finished = stat.st_ino == mark.inode and stat.st_size == mark.offset
            if finished and now - stat.st_mtime >= self._keep_s:
                path.unlink(missing_ok=True)
                del self._marks[name]
                self._dirty = True

    def _set_aside_incomplete(self, now: float) -> None:
        for name, tail in self._tails.items():
            mark = self._marks.get(name)
            committed = mark.offset if mark is not None and mark.inode == tail.inode else 0
            if committed != tail.start:
                continue  # lines before the tail are not committed yet
            path = self._folder / name
            try:
                stat = path.stat()
                if (stat.st_ino, stat.st_size) != (tail.inode, tail.size):
                    continue  # it grew: the line is being finished
                if now - stat.st_mtime < self._keep_s:
                    continue
                path.rename(path.with_name(name + INCOMPLETE_SUFFIX))
            except FileNotFoundError:
                continue
            log.warning(
                "agi_report_incomplete_line", file=name, kept_as=name + INCOMPLETE_SUFFIX,
                bytes=tail.size - tail.start,
            )  # fmt: skip
            self._marks.pop(name, None)
            self._dirty = True
        self._tails = {}

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        path = self._folder / OFFSETS_FILE
        try:
            raw = json.loads(path.read_text("utf-8"))
            self._marks = {
                str(name): FileMark(int(value[0]), int(value[1])) for name, value in raw.items()
            }
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            # Unreadable: every file is read from its start (CDRs are stored once).
            log.warning("agi_offsets_unreadable", path=str(path), error=str(exc))
            self._marks = {}

    def _save(self) -> None:
        path = self._folder / OFFSETS_FILE
        temporary = path.with_name(path.name + ".new")
        data = {name: [mark.inode, mark.offset] for name, mark in self._marks.items()}
        temporary.write_text(json.dumps(data), "utf-8")
        os.replace(temporary, path)
        self._dirty = False
