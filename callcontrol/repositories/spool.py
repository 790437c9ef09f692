"""The local spool: a durable journal of work the database or the mail server
could not take yet (CDRs with their charges, voicemail messages, mails).

An SQLite file of its own on local disk, never the main database, with
``journal_mode=WAL`` and ``synchronous=FULL``: once ``append`` returns, the
entry survives a crash or a power cut. The rules it keeps:

- Entries are replayed oldest first (``oldest``), per queue: the database
  queue (``cdr``, ``voicemail``: a voicemail row points at its CDR, which is
  older) and the mail queue (``mail``), so a mail server that is down never
  holds up CDRs.
- Every entry has a unique ``key`` (``cdr:<call id>``, ``voicemail:<call id>``,
  ``mail:<Message-ID>``): appending a key already held is a no-op. A key that
  was completed can be remembered (``remove(..., done=True)``, kept
  ``DONE_KEPT_S``), so work that has no idempotency key of its own in the
  target (a mail) is not done twice when its journal entry is replayed again.
- An entry is removed only after its work is committed in the target; a crash
  in between replays it, and the replay must be idempotent (the CDR id is the
  call id, charges have idempotency keys, voicemail rows are looked up by CDR,
  mails by their done key).
- Nothing is dropped: an entry the target keeps refusing is marked ``dead``
  (kept, counted, logged) so it no longer blocks its queue.
- A spool belongs to one database (``target``, its URL without password): a
  spool holding entries for another one refuses to open (``SpoolMismatch``).
- The sqlite3 calls run in a worker thread (an fsync takes milliseconds), one
  at a time; ``depth`` is kept in memory for /metrics and /health.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url

T = TypeVar("T")

DONE_KEPT_S = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,
    attachment BLOB,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_queue ON entries (dead, kind, id);
CREATE TABLE IF NOT EXISTS done (key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SpoolMismatch(RuntimeError):
    """The spool holds entries for another database: replaying them here would be wrong."""


def spool_target(database_url: str) -> str:
    """The database a spool belongs to: its URL without the password."""
    return make_url(database_url).render_as_string(hide_password=True)


class SpoolKind(StrEnum):
    CDR = "cdr"
    VOICEMAIL = "voicemail"
    MAIL = "mail"


DATABASE_QUEUE = frozenset({SpoolKind.CDR, SpoolKind.VOICEMAIL})
MAIL_QUEUE = frozenset({SpoolKind.MAIL})


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    id: int
    kind: SpoolKind
    key: str
    payload: bytes
    attachment: bytes | None
    created_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class SpoolDepth:
    held: dict[SpoolKind, int]
    """Entries waiting (dead ones included), by kind."""
    dead: dict[SpoolKind, int]

    @property
    def total(self) -> int:
        return sum(self.held.values())


class Spool:
    """The journal. ``open()`` before use (the composition root does, at start-up)."""

    def __init__(
        self, path: Path, *, target: str = "", clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self._target = target
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._depth = SpoolDepth({k: 0 for k in SpoolKind}, {k: 0 for k in SpoolKind})
        self._appended: list[Callable[[SpoolKind], None]] = []
        self.journaled = {k: 0 for k in SpoolKind}
        """Entries appended by this process, by kind (for /metrics)."""
        self.replayed = {k: 0 for k in SpoolKind}
        """Entries whose work a replayer of this process completed, by kind."""

    # -- life cycle -------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA busy_timeout = 10000")  # another process on the same spool
        db.executescript(_SCHEMA)
        db.execute("DELETE FROM done WHERE at < ?", (self._clock() - DONE_KEPT_S,))
        self._db = db
        self._count()
        row = db.execute("SELECT value FROM meta WHERE name = 'target'").fetchone()
        if row is not None and row[0] != self._target and self._depth.total:
            self._db = None
            db.close()
            raise SpoolMismatch(
                f"spool {self.path} holds {self._depth.total} entries for {row[0]!r}, "
                f"not for {self._target!r}: replay them there or move the file away"
            )
        db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('target', ?)", (self._target,)
        )

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await asyncio.to_thread(db.close)

    def on_append(self, listener: Callable[[SpoolKind], None]) -> None:
        """Called (on the event loop) after each entry is journaled: wakes a replayer."""
        self._appended.append(listener)

    @property
    def depth(self) -> SpoolDepth:
        return self._depth

    def pending(self, kinds: Collection[SpoolKind]) -> int:
        """Entries of ``kinds`` still to replay (dead ones left out)."""
        return sum(self._depth.held[k] - self._depth.dead[k] for k in kinds)

    # -- operations ---------------------------------------------------------------

    async def append(
        self, kind: SpoolKind, key: str, payload: bytes, attachment: bytes | None = None
    ) -> bool:
        """Journal an entry durably; False if ``key`` is already held or was done."""
        added = await self._run(self._append, kind, key, payload, attachment)
        if added:
            self.journaled[kind] += 1
            for listener in self._appended:
                listener(kind)
        return added

    def _append(self, kind: SpoolKind, key: str, payload: bytes, attachment: bytes | None) -> bool:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM done WHERE key = ?", (key,)).fetchone():
                added = False
            else:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO entries (kind, key, payload, attachment, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (kind.value, key, payload, attachment, self._clock()),
                )
                added = cursor.rowcount == 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._count()
        return added

    async def oldest(self, kinds: Collection[SpoolKind], limit: int = 1) -> list[SpoolEntry]:
        """The oldest live entries of ``kinds``, oldest first."""
        return await self._run(self._oldest, tuple(k.value for k in kinds), limit)

    def _oldest(self, kinds: tuple[str, ...], limit: int) -> list[SpoolEntry]:
        marks = ",".join("?" * len(kinds))
        rows = self._conn().execute(
            "SELECT id, kind, key, payload, attachment, created_at, attempts FROM entries"
            f" WHERE dead = 0 AND kind IN ({marks}) ORDER BY id LIMIT ?",
            (*kinds, limit),
        )
        return [
            SpoolEntry(r[0], SpoolKind(r[1]), r[2], bytes(r[3]), r[4] and bytes(r[4]), r[5], r[6])
            for r in rows
        ]

    async def remove(
        self, entries: Sequence[SpoolEntry], *, done: bool = False, replayed: bool = False
    ) -> None:
        """The entries' work is committed: forget them, in one transaction
        (``done``: remember their keys; ``replayed``: count them as replayed, before
        the depth changes, so a scrape never sees one without the other)."""
        ids = [(entry.id,) for entry in entries]
        keys = [(entry.key, self._clock()) for entry in entries] if done else []
        kinds = [entry.kind for entry in entries] if replayed else []
        await self._run(self._remove, ids, keys, kinds)

    def _remove(
        self, ids: list[tuple[int]], keys: list[tuple[str, float]], kinds: list[SpoolKind]
    ) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM entries WHERE id = ?", ids)
            db.executemany("INSERT OR REPLACE INTO done (key, at) VALUES (?, ?)", keys)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for kind in kinds:
            self.replayed[kind] += 1
        self._count()

    async def mark_done(self, key: str) -> None:
        """Remember that ``key``'s work was done without a journal entry (a mail sent at once)."""
        await self._run(self._mark_done, key)

    def _mark_done(self, key: str) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO done (key, at) VALUES (?, ?)", (key, self._clock())
        )

    async def is_done(self, key: str) -> bool:
        return await self._run(self._is_done, key)

    def _is_done(self, key: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM done WHERE key = ?", (key,)).fetchone()
        return row is not None

    async def holds(self, key: str) -> bool:
        return await self._run(self._holds, key)

    def _holds(self, key: str) -> bool:
        return (
            self._conn().execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone()
            is not None
        )

    async def failed(self, entry: SpoolEntry, error: str, *, dead: bool) -> None:
        """A replay of ``entry`` failed; ``dead``: stop replaying it (it stays held)."""
        await self._run(self._failed, entry.id, error[:1000], dead)

    def _failed(self, entry_id: int, error: str, dead: bool) -> None:
        self._conn().execute(
            "UPDATE entries SET attempts = attempts + 1, last_error = ?, dead = ? WHERE id = ?",
            (error, int(dead), entry_id),
        )
        self._count()

    # -- internals ----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"spool {self.path} is not open")
        return self._db

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        def locked() -> T:
            with self._lock:
                return work(*args)

        return await asyncio.to_thread(locked)

    def _count(self) -> None:
        held = {k: 0 for k in SpoolKind}
        dead = {k: 0 for k in SpoolKind}
        rows = self._conn().execute("SELECT kind, dead, count(*) FROM entries GROUP BY kind, dead")
        for kind, is_dead, count in rows:
            held[SpoolKind(kind)] += count
            if is_dead:
                dead[SpoolKind(kind)] += count
        self._depth = SpoolDepth(held, dead)
