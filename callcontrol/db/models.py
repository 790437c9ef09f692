"""The data model of callcontrol (SQLAlchemy 2 typed declarative).

Rules this module keeps:
- Money is integer minor units (``*_minor``, BIGINT) next to an ISO 4217 currency;
  never a float. ``accounts.balance_minor`` is a cache of the ledger and is moved
  only by :func:`callcontrol.db.ledger.post`, together with its ledger row; setting
  it on a loaded Account raises.
- Times are aware UTC (:class:`~callcontrol.db.types.UtcDateTime`); calendar days
  that fix billing (``activated_on``, ``period_start``) are plain dates.
- Enums are the StrEnums of :mod:`callcontrol.domain.vocabulary`, stored as their
  value with a CHECK constraint named ``ck_<table>_<column>_valid``.
- No secret is stored in clear: SIP passwords as the Asterisk HA1 digest, API
  tokens as their SHA-256.
- Relationships load with ``lazy="raise"``: under asyncio a lazy load is a bug, so
  callers say what they need (``selectinload``).

The schema itself is created by the Alembic migrations shipped in
``callcontrol/db/migrations``; a component test checks both agree.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from callcontrol.db.types import UtcDateTime, enum_type, utcnow
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    Disposition,
    ForwardingMode,
    LedgerKind,
    LegOutcome,
    MediaKind,
    NumberKind,
    NumberState,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_ENUMS: tuple[type[StrEnum], ...] = (
    CallDirection,
    DestinationType,
    Disposition,
    ForwardingMode,
    LedgerKind,
    LegOutcome,
    MediaKind,
    NumberKind,
    NumberState,
)


_TYPE_MAP: dict[Any, sa.types.TypeEngine[Any]] = {
    datetime: UtcDateTime(),
    date: sa.Date(),
    **{enum: enum_type(enum) for enum in _ENUMS},
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = _TYPE_MAP


# Column shapes used across tables.
IntPk = Annotated[int, mapped_column(primary_key=True)]
# High-volume tables: BIGINT on PostgreSQL; SQLite autoincrements only INTEGER keys.
BigPk = Annotated[
    int, mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
]
Minor = Annotated[int, mapped_column(sa.BigInteger())]
Currency = Annotated[str, mapped_column(sa.String(3))]
E164 = Annotated[str, mapped_column(sa.String(16))]
CreatedAt = Annotated[datetime, mapped_column(default=utcnow)]

TokenRole = Literal["operator", "customer"]


def _fk(target: str, ondelete: str, **kw: Any) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete=ondelete, **kw)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        sa.CheckConstraint(
            "negotiated_bulk_discount_pct BETWEEN 0 AND 100", name="discount_pct_range"
        ),
    )

    id: Mapped[IntPk]
    name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str | None] = mapped_column(sa.String(320))  # None once erased
    currency: Mapped[Currency]
    balance_minor: Mapped[Minor] = mapped_column(default=0, server_default="0")
    negotiated_bulk_discount_pct: Mapped[int] = mapped_column(default=0, server_default="0")
    # The default presented number; use_alter breaks the accounts <-> numbers cycle.
    callerid_number_id: Mapped[int | None] = mapped_column(
        _fk("numbers.id", "SET NULL", use_alter=True)
    )
    created_at: Mapped[CreatedAt]
    erased_at: Mapped[datetime | None]


class MediaFile(Base):
    __tablename__ = "media_files"

    id: Mapped[IntPk]
    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "CASCADE"), index=True)
    kind: Mapped[MediaKind]
    original_name: Mapped[str] = mapped_column(sa.String(255))
    stored_name: Mapped[str] = mapped_column(sa.String(255), unique=True)  # under media root
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger())
    duration_ms: Mapped[int]
    created_at: Mapped[CreatedAt]


class Number(Base):
    __tablename__ = "numbers"
    __table_args__ = (
        sa.Index("ix_numbers_pool", "state", "country_code", "city"),
        sa.CheckConstraint("e164 LIKE '+%'", name="e164_plus"),
    )

    id: Mapped[IntPk]
    e164: Mapped[E164] = mapped_column(unique=True)  # the call path looks DIDs up by it
    country_code: Mapped[int]  # E.164 calling code, e.g. 49
    region: Mapped[str] = mapped_column(sa.String(2))  # ISO 3166 alpha-2
    city: Mapped[str | None] = mapped_column(sa.String(100))
    kind: Mapped[NumberKind]
    state: Mapped[NumberState] = mapped_column(default=NumberState.AVAILABLE)
    account_id: Mapped[int | None] = mapped_column(_fk("accounts.id", "SET NULL"), index=True)
    previous_account_id: Mapped[int | None] = mapped_column(_fk("accounts.id", "SET NULL"))
    reservable: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    needs_documents: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    documents_accepted_at: Mapped[datetime | None]
    # What the local carrier says activation takes ("24h", "1-2 days", "5-15 working days").
    expected_activation: Mapped[str | None] = mapped_column(sa.String(50))
    activated_on: Mapped[date | None]  # fixes the monthly charge day
    monthly_fee_minor: Mapped[Minor]
    setup_fee_minor: Mapped[Minor]
    currency: Mapped[Currency]
    callerid_service: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    reserved_until: Mapped[datetime | None]
    test_expires_at: Mapped[datetime | None]
    test_account_id: Mapped[int | None] = mapped_column(_fk("accounts.id", "SET NULL"))
    voicemail_enabled: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    greeting_media_id: Mapped[int | None] = mapped_column(_fk("media_files.id", "SET NULL"))
    voicemail_greeting_media_id: Mapped[int | None] = mapped_column(
        _fk("media_files.id", "SET NULL")
    )
    state_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[CreatedAt]

    forwarding_rule: Mapped[ForwardingRule | None] = relationship(lazy="raise")
    destinations: Mapped[list[ForwardingDestination]] = relationship(
        lazy="raise", order_by="ForwardingDestination.position"
    )


class NumberEvent(Base):
    """One life-cycle transition of a number (audit trail)."""

    __tablename__ = "number_events"

    id: Mapped[BigPk]
    number_id: Mapped[int] = mapped_column(_fk("numbers.id", "CASCADE"), index=True)
    from_state: Mapped[NumberState | None]
    to_state: Mapped[NumberState]
    reason: Mapped[str] = mapped_column(sa.String(200), default="")
    actor: Mapped[str] = mapped_column(sa.String(100), default="system")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ForwardingRule(Base):
    __tablename__ = "forwarding_rules"

    number_id: Mapped[int] = mapped_column(_fk("numbers.id", "CASCADE"), primary_key=True)
    mode: Mapped[ForwardingMode] = mapped_column(default=ForwardingMode.SIMULTANEOUS)


class ForwardingDestination(Base):
    __tablename__ = "forwarding_destinations"
    __table_args__ = (
        sa.UniqueConstraint(
            "number_id", "position", name="uq_forwarding_destinations_number_position"
        ),
        sa.CheckConstraint("position IN (1, 2)", name="position_1_or_2"),
        sa.CheckConstraint("ring_timeout_s > 0", name="ring_timeout_positive"),
    )

    id: Mapped[IntPk]
    number_id: Mapped[int] = mapped_column(_fk("numbers.id", "CASCADE"))
    position: Mapped[int]
    type: Mapped[DestinationType]
    target: Mapped[str] = mapped_column(sa.String(300))
    ring_timeout_s: Mapped[int]


class SipAccount(Base):
    __tablename__ = "sip_accounts"

    id: Mapped[IntPk]
    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "CASCADE"), index=True)
    login: Mapped[str] = mapped_column(sa.String(64), unique=True)
    domain: Mapped[str] = mapped_column(sa.String(255))
    # Asterisk HA1 md5("login:realm:password") hex, for pjsip password_digest=MD5:...
    password_digest: Mapped[str] = mapped_column(sa.String(32))
    presented_number_id: Mapped[int | None] = mapped_column(_fk("numbers.id", "SET NULL"))
    created_at: Mapped[CreatedAt]


def sip_password_digest(login: str, realm: str, password: str) -> str:
    """The HA1 digest Asterisk accepts as ``password_digest`` (the only form stored)."""
    return hashlib.md5(f"{login}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()


class Rate(Base):
    """Per-minute price of PSTN calls; the longest matching ``prefix`` wins."""

    __tablename__ = "rates"

    id: Mapped[IntPk]
    prefix: Mapped[str] = mapped_column(sa.String(15), unique=True)  # E.164 digits, no '+'
    rate_per_minute_minor: Mapped[Minor]
    currency: Mapped[Currency]
    description: Mapped[str] = mapped_column(sa.String(200), default="")


class Cdr(Base):
    """One call as the caller saw it; its forwarding attempts are ``legs``."""

    __tablename__ = "cdrs"

    id: Mapped[str] = mapped_column(
        sa.String(36), primary_key=True, default=lambda: str(uuid.uuid4())
    )
    direction: Mapped[CallDirection]
    did: Mapped[E164]
    number_id: Mapped[int | None] = mapped_column(_fk("numbers.id", "SET NULL"))
    account_id: Mapped[int | None] = mapped_column(_fk("accounts.id", "SET NULL"), index=True)
    caller: Mapped[str | None] = mapped_column(sa.String(64))  # anonymisable
    started_at: Mapped[datetime] = mapped_column(index=True)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    disposition: Mapped[Disposition | None]  # None until the call ended
    sip_code: Mapped[int | None]  # final code sent to the caller when rejected
    hangup_cause: Mapped[int | None]  # Q.850
    # Why the engine refused or cut the call: unknown_number, suspended, engine_restart ...
    reject_reason: Mapped[str | None] = mapped_column(sa.String(40))
    answered_destination: Mapped[str | None] = mapped_column(sa.String(300))
    ring_ms: Mapped[int] = mapped_column(default=0)
    talk_ms: Mapped[int] = mapped_column(default=0)
    cost_minor: Mapped[Minor] = mapped_column(default=0)
    currency: Mapped[str | None] = mapped_column(sa.String(3))

    legs: Mapped[list[CdrLeg]] = relationship(lazy="raise", order_by="CdrLeg.position")


class CdrLeg(Base):
    __tablename__ = "cdr_legs"

    id: Mapped[BigPk]
    cdr_id: Mapped[str] = mapped_column(_fk("cdrs.id", "CASCADE"), index=True)
    position: Mapped[int]
    destination_type: Mapped[DestinationType]
    target: Mapped[str] = mapped_column(sa.String(300))
    channel_id: Mapped[str | None] = mapped_column(sa.String(64))
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[LegOutcome | None]
    cause: Mapped[int | None]  # Q.850
    billed_seconds: Mapped[int] = mapped_column(default=0)
    cost_minor: Mapped[Minor] = mapped_column(default=0)


class LedgerEntry(Base):
    """One movement of money: + credit, - debit. Written only by ``ledger.post``."""

    __tablename__ = "ledger_entries"
    __table_args__ = (sa.Index("ix_ledger_entries_account_created", "account_id", "created_at"),)

    id: Mapped[BigPk]
    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "RESTRICT"))
    kind: Mapped[LedgerKind]
    amount_minor: Mapped[Minor]
    currency: Mapped[Currency]
    created_at: Mapped[CreatedAt]
    number_id: Mapped[int | None] = mapped_column(_fk("numbers.id", "SET NULL"))
    cdr_id: Mapped[str | None] = mapped_column(_fk("cdrs.id", "SET NULL"))
    period_start: Mapped[date | None]  # monthly fees: the charge day of the period
    # e.g. "monthly:<number_id>:<YYYY-MM-DD>", "call:<cdr_id>": makes charges exactly-once
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    description: Mapped[str] = mapped_column(sa.String(500), default="")


class VoicemailMessage(Base):
    __tablename__ = "voicemail_messages"

    id: Mapped[IntPk]
    number_id: Mapped[int | None] = mapped_column(_fk("numbers.id", "SET NULL"))
    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "CASCADE"), index=True)
    cdr_id: Mapped[str | None] = mapped_column(_fk("cdrs.id", "SET NULL"))
    caller: Mapped[str | None] = mapped_column(sa.String(64))
    stored_name: Mapped[str] = mapped_column(sa.String(255))
    duration_ms: Mapped[int]
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger())
    created_at: Mapped[CreatedAt]
    mailed_at: Mapped[datetime | None]
    mail_error: Mapped[str | None] = mapped_column(sa.Text())


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        sa.CheckConstraint("role IN ('operator', 'customer')", name="role_valid"),
        sa.CheckConstraint(
            "(role = 'operator') = (account_id IS NULL)", name="operator_has_no_account"
        ),
    )

    id: Mapped[IntPk]
    account_id: Mapped[int | None] = mapped_column(_fk("accounts.id", "CASCADE"))  # None: operator
    role: Mapped[TokenRole] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)  # sha256 hex
    created_at: Mapped[CreatedAt]
    revoked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # None: until revoked
    label: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")


class NumberDocument(Base):
    """An end user's document for a number that needs one; the file lives under
    ``documents.root`` (never the media folder Asterisk reads)."""

    __tablename__ = "number_documents"

    id: Mapped[IntPk]
    number_id: Mapped[int | None] = mapped_column(_fk("numbers.id", "SET NULL"), index=True)
    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))  # domain.documents.DocumentKind
    content_type: Mapped[str] = mapped_column(sa.String(50))
    original_name: Mapped[str] = mapped_column(sa.String(255))
    stored_name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger())
    state: Mapped[str] = mapped_column(sa.String(16), default="submitted")  # DocumentState
    reason: Mapped[str | None] = mapped_column(sa.String(300))
    created_at: Mapped[CreatedAt]
    reviewed_at: Mapped[datetime | None]


class NumberBillingState(Base):
    """What billing remembers per number: since when it is suspended (grace days
    count from there), the day its owner deleted it, and the charge date a
    low-balance reminder was last sent for (so none is sent twice)."""

    __tablename__ = "number_billing_state"

    number_id: Mapped[int] = mapped_column(_fk("numbers.id", "CASCADE"), primary_key=True)
    suspended_since: Mapped[date | None]
    deleted_on: Mapped[date | None]
    last_reminder_for: Mapped[date | None]


class BillingRun(Base):
    """One row per daily run; a run that never set ``finished_at`` crashed, and the
    next run catches up from the last finished one."""

    __tablename__ = "billing_runs"

    id: Mapped[IntPk]
    run_date: Mapped[date] = mapped_column(index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    charges_posted: Mapped[int] = mapped_column(default=0, server_default="0")


class RoutingChange(Base):
    """One row: the routing of this number (of this account's numbers; all NULL:
    of every number) may have changed. Written only by the database's triggers
    (migration 0005), read by ``repositories.routing_changes``; no foreign keys,
    the log outlives what it names."""

    __tablename__ = "routing_changes"
    # AUTOINCREMENT: SQLite never reuses an id, even when pruning emptied the table.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[BigPk]
    number_id: Mapped[int | None]
    account_id: Mapped[int | None]
    e164: Mapped[str | None] = mapped_column(sa.String(16))  # numbers' own rows only
    changed_at: Mapped[datetime] = mapped_column(
        server_default=sa.text("CURRENT_TIMESTAMP"), index=True
    )


def _add_enum_checks(metadata: sa.MetaData) -> None:
    """A CHECK per enum column, named after the column (``ck_<table>_<col>_valid``)."""
    for table in metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, sa.Enum):
                values = ", ".join(f"'{v}'" for v in column.type.enums)
                table.append_constraint(
                    sa.CheckConstraint(f"{column.name} IN ({values})", name=f"{column.name}_valid")
                )


_add_enum_checks(Base.metadata)


class BalanceIsLedgerOwned(AttributeError):
    """``Account.balance_minor`` was set outside ``ledger.post``."""


@event.listens_for(Account.balance_minor, "set")
def _refuse_balance_writes(target: Account, value: int, oldvalue: Any, initiator: Any) -> None:
    # A new account may start at 0; after that only the ledger moves the balance
    # (it writes with a Core UPDATE, which does not pass through here).
    if sa.inspect(target).has_identity or value != 0:
        raise BalanceIsLedgerOwned(
            "accounts.balance_minor moves only with a ledger entry: use callcontrol.db.ledger.post"
        )


# The money documents' tables live in their own module; importing it here puts
# them in ``Base.metadata`` wherever the models are loaded.
from callcontrol.db import money_models as _money_models  # noqa: E402, F401
