"""Column types shared by the models.

Rules kept here:
- Times are ``DateTime(timezone=True)`` in the database and always tz-aware UTC in
  Python. SQLite has no time zones, so :class:`UtcDateTime` stores naive UTC there
  and gives back aware UTC on every backend; a naive datetime is refused on the way
  in, because guessing its zone is how billing days drift.
- Enums are stored as their string value (``VARCHAR`` + a CHECK), never as a native
  database enum, so adding a member is a plain migration on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Now, tz-aware UTC: the only clock the models use for defaults."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that always round-trips as aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: callcontrol stores aware UTC only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


ENUM_LENGTH = 32


def enum_type(enum: type[StrEnum]) -> sa.Enum:
    """A StrEnum stored as its value in a ``VARCHAR(32)``.

    The CHECK constraint is added per column by ``models`` (named after the
    column, so two columns of one enum in one table do not collide).
    """
    return sa.Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=ENUM_LENGTH,
        validate_strings=True,
        values_callable=_values,
    )


def _values(enum: Any) -> list[str]:
    return [member.value for member in enum]
