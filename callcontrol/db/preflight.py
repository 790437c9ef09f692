"""What can be wrong with the database before anything uses it, said in one line.

Rules this module keeps:
- Only two URL forms are accepted, ``sqlite+aiosqlite:///PATH`` and
  ``postgresql+asyncpg://...``; anything else (``postgresql://``, plain
  ``sqlite:///``, an unknown driver) is a :class:`DatabaseUrlError` naming the
  form to use. A SQLite file whose folder does not exist is an error too: the
  folder is never created behind the operator's back.
- A URL is shown only through :func:`masked` (password replaced by ``***``).
- :func:`check_schema` connects once and compares the revision with the head
  shipped in this package: unreachable → :class:`DatabaseUnreachable`, not at
  head → :class:`DatabaseNotMigrated` (whose message says to run
  ``callcontrol db upgrade``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

ACCEPTED = ("sqlite+aiosqlite", "postgresql+asyncpg")
CONNECT_TIMEOUT_S = 10.0


class DatabaseProblem(Exception):
    """A database failure a person can act on; ``str()`` is one line."""


class DatabaseUrlError(DatabaseProblem):
    """The database URL cannot work as written."""


class DatabaseUnreachable(DatabaseProblem):
    """The database could not be connected to (host, port, credentials, file)."""


class DatabaseNotMigrated(DatabaseProblem):
    """The schema is missing or older than this version of callcontrol."""


def masked(url: str) -> str:
    """``url`` with its password hidden; an unparsable URL is not shown at all."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparsable URL>"


def validate_url(url: str) -> URL:
    """The parsed URL, or :class:`DatabaseUrlError` saying what to write instead."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise DatabaseUrlError(
            "CALLCONTROL_DATABASE__URL is not a database URL; use "
            "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@HOST/DB"
        ) from exc
    name = parsed.drivername  # "backend+driver" as written; loads no dialect
    backend = name.split("+", 1)[0]
    if backend == "sqlite" and name != "sqlite+aiosqlite":
        raise DatabaseUrlError(
            f"CALLCONTROL_DATABASE__URL={masked(url)}: the engine needs the async driver; "
            "write sqlite+aiosqlite:///PATH"
        )
    if backend == "postgresql" and name != "postgresql+asyncpg":
        raise DatabaseUrlError(
            f"CALLCONTROL_DATABASE__URL={masked(url)}: the engine needs the async driver; "
            "write postgresql+asyncpg://..."
        )
    if name not in ACCEPTED:
        raise DatabaseUrlError(
            f"CALLCONTROL_DATABASE__URL={masked(url)}: unsupported database {backend!r}; "
            "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://..."
        )
    if backend == "sqlite":
        _check_sqlite_folder(parsed)
    return parsed


def _check_sqlite_folder(url: URL) -> None:
    if url.database in (None, "", ":memory:"):
        return
    folder = Path(url.database).expanduser().parent
    if not folder.is_dir():
        raise DatabaseUrlError(
            f"CALLCONTROL_DATABASE__URL: the folder {folder} of the SQLite file does not "
            f"exist; create it (mkdir -p {folder}) or point the URL elsewhere"
        )


def unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    """A one-line :class:`DatabaseUnreachable` for a failed connection."""
    original = getattr(exc, "orig", None) or exc
    reason = str(original).strip().splitlines()[0] if str(original).strip() else ""
    reason = reason or type(original).__name__
    return DatabaseUnreachable(f"cannot connect to the database {masked(url)}: {reason}")


async def check_schema(url: str, *, echo: bool = False) -> str:
    """The database's revision when it is at head; else raise a DatabaseProblem."""
    from callcontrol.db.engine import create_engine, current_revision_of, head_revision
    from callcontrol.settings import DatabaseSettings

    validate_url(url)
    engine = create_engine(DatabaseSettings(url=url, echo=echo), pooled=False)
    try:
        revision = await asyncio.wait_for(current_revision_of(engine), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, sqlalchemy.exc.DBAPIError) as exc:
        raise unreachable(url, exc) from exc
    finally:
        await engine.dispose()
    head = head_revision()
    if revision != head:
        state = (
            "empty (never migrated)" if revision is None else f"at revision {revision}, not {head}"
        )
        raise DatabaseNotMigrated(
            f"the database {masked(url)} is {state}: run callcontrol db upgrade"
        )
    return revision
