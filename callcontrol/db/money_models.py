"""Tables of the money documents: companies, bank transfers, numbered documents.

Rules this module keeps (migration ``0004``):
- a company account has one ``company_profiles`` row (legal name, address, tax
  id, contract number); any account may have one, none is needed for calls;
- a bank transfer is one ``bank_payments`` row, unique on the bank's
  ``reference``; its money is the ledger entry ``bank-transfer:<reference>``
  (the ledger stays the only place money moves);
- a document (invoice, statement of services rendered, reconciliation
  statement) is issued once per account, kind and period and then frozen
  (``content`` is the JSON that was issued). Its number comes from
  ``document_counters``, incremented in the same transaction that inserts the
  document: a rolled-back issue gives its number back, so numbers never repeat
  (unique) and never skip (a counter, not a database sequence, which may skip).
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from callcontrol.db.models import Base, CreatedAt, Currency, IntPk, Minor, _fk

DOCUMENT_KINDS = ("invoice", "services", "reconciliation")


class CompanyProfile(Base):
    __tablename__ = "company_profiles"

    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "CASCADE"), primary_key=True)
    legal_name: Mapped[str] = mapped_column(sa.String(300))
    address: Mapped[str] = mapped_column(sa.String(500))
    tax_id: Mapped[str] = mapped_column(sa.String(40))
    contract_number: Mapped[str] = mapped_column(sa.String(60))
    updated_at: Mapped[CreatedAt]


class BankPayment(Base):
    __tablename__ = "bank_payments"

    id: Mapped[IntPk]
    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "RESTRICT"), index=True)
    reference: Mapped[str] = mapped_column(sa.String(100), unique=True)
    amount_minor: Mapped[Minor]
    currency: Mapped[Currency]
    received_on: Mapped[date]
    ledger_entry_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    recorded_at: Mapped[CreatedAt]


class DocumentCounter(Base):
    __tablename__ = "document_counters"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('invoice', 'services', 'reconciliation')", name="kind_valid"),
    )

    kind: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    last_seq: Mapped[int] = mapped_column(default=0, server_default="0")


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('invoice', 'services', 'reconciliation')", name="kind_valid"),
        sa.UniqueConstraint("kind", "seq", name="uq_documents_kind_seq"),
        sa.UniqueConstraint(
            "account_id", "kind", "period_from", "period_to", name="uq_documents_period"
        ),
    )

    id: Mapped[IntPk]
    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    seq: Mapped[int]
    number: Mapped[str] = mapped_column(sa.String(32), unique=True)
    period_from: Mapped[date]
    period_to: Mapped[date]
    currency: Mapped[Currency]
    total_minor: Mapped[Minor]
    content: Mapped[str] = mapped_column(sa.Text())  # the issued JSON, frozen
    issued_at: Mapped[datetime]


# -- reminders by phone ----------------------------------------------------------------
# An account's optional contact phone; the operator's prompt; one reminder per
# account and charge date (never two: unique), each call attempt recorded.


class AccountContact(Base):
    __tablename__ = "account_contacts"

    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "CASCADE"), primary_key=True)
    phone: Mapped[str] = mapped_column(sa.String(16))  # E.164, valid per phonenumbers
    updated_at: Mapped[CreatedAt]


class ReminderPrompt(Base):
    """The operator's uploaded notice (WAV PCM 8 kHz 16-bit mono); the newest plays."""

    __tablename__ = "reminder_prompts"

    id: Mapped[IntPk]
    original_name: Mapped[str] = mapped_column(sa.String(255))
    stored_name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger())
    duration_ms: Mapped[int]
    created_at: Mapped[CreatedAt]


class PhoneReminder(Base):
    __tablename__ = "phone_reminders"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "due_on", name="uq_phone_reminders_account_due"),
        sa.CheckConstraint("state IN ('pending', 'done', 'gave_up')", name="state_valid"),
    )

    id: Mapped[IntPk]
    account_id: Mapped[int] = mapped_column(_fk("accounts.id", "CASCADE"))
    due_on: Mapped[date]  # the charge date the reminder is for
    number: Mapped[str] = mapped_column(sa.String(16))  # the DID the fee is for
    amount_minor: Mapped[Minor]  # the fees due on that date
    currency: Mapped[Currency]
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[CreatedAt]


class PhoneReminderAttempt(Base):
    __tablename__ = "phone_reminder_attempts"
    __table_args__ = (
        sa.UniqueConstraint("reminder_id", "attempt", name="uq_phone_reminder_attempts_attempt"),
    )

    id: Mapped[IntPk]
    reminder_id: Mapped[int] = mapped_column(_fk("phone_reminders.id", "CASCADE"), index=True)
    attempt: Mapped[int]  # 1, 2, ...
    phone: Mapped[str] = mapped_column(sa.String(16))
    channel_id: Mapped[str] = mapped_column(sa.String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(sa.String(16))  # None while the call runs
    cause: Mapped[int | None]
