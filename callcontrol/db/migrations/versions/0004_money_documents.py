"""Money documents and phone reminders.

Company profiles, bank transfers, numbered documents; contact phones, the
reminder prompt, phone reminders and their attempts.

New tables only (ORM classes: ``callcontrol.db.money_models``); no column of an
existing table changes. ``document_counters`` gets one row per document kind,
so issuing a document only ever increments an existing row.

Revision ID: 0004
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("invoice", "services", "reconciliation")
_KIND_CHECK = "kind IN ('invoice', 'services', 'reconciliation')"
_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _account_fk(table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["accounts.id"],
        name=op.f(f"fk_{table}_account_id_accounts"),
        ondelete=ondelete,
    )


def upgrade() -> None:
    op.create_table(
        "company_profiles",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("legal_name", sa.String(300), nullable=False),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("tax_id", sa.String(40), nullable=False),
        sa.Column("contract_number", sa.String(60), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _account_fk("company_profiles", "CASCADE"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_company_profiles")),
    )
    op.create_table(
        "bank_payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("ledger_entry_id", _BIG, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        _account_fk("bank_payments", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_payments")),
        sa.UniqueConstraint("reference", name=op.f("uq_bank_payments_reference")),
    )
    op.create_index(
        op.f("ix_bank_payments_account_id"), "bank_payments", ["account_id"], unique=False
    )
    counters = op.create_table(
        "document_counters",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("last_seq", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(_KIND_CHECK, name=op.f("ck_document_counters_kind_valid")),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_document_counters")),
    )
    op.bulk_insert(counters, [{"kind": kind, "last_seq": 0} for kind in KINDS])
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("period_from", sa.Date(), nullable=False),
        sa.Column("period_to", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_KIND_CHECK, name=op.f("ck_documents_kind_valid")),
        _account_fk("documents", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("kind", "seq", name="uq_documents_kind_seq"),
        sa.UniqueConstraint(
            "account_id", "kind", "period_from", "period_to", name="uq_documents_period"
        ),
        sa.UniqueConstraint("number", name=op.f("uq_documents_number")),
    )
    op.create_index(op.f("ix_documents_account_id"), "documents", ["account_id"], unique=False)
    _phone_reminder_tables()


def _phone_reminder_tables() -> None:
    op.create_table(
        "account_contacts",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _account_fk("account_contacts", "CASCADE"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_contacts")),
    )
    op.create_table(
        "reminder_prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("original_name", sa.String(255), nullable=False),
        sa.Column("stored_name", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_prompts")),
        sa.UniqueConstraint("stored_name", name=op.f("uq_reminder_prompts_stored_name")),
    )
    op.create_table(
        "phone_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'done', 'gave_up')", name=op.f("ck_phone_reminders_state_valid")
        ),
        _account_fk("phone_reminders", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_reminders")),
        sa.UniqueConstraint("account_id", "due_on", name="uq_phone_reminders_account_due"),
    )
    op.create_index(
        op.f("ix_phone_reminders_next_attempt_at"), "phone_reminders", ["next_attempt_at"],
        unique=False,
    )  # fmt: skip
    op.create_table(
        "phone_reminder_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reminder_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("channel_id", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("cause", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reminder_id"],
            ["phone_reminders.id"],
            name=op.f("fk_phone_reminder_attempts_reminder_id_phone_reminders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_reminder_attempts")),
        sa.UniqueConstraint("reminder_id", "attempt", name="uq_phone_reminder_attempts_attempt"),
    )
    op.create_index(
        op.f("ix_phone_reminder_attempts_reminder_id"), "phone_reminder_attempts",
        ["reminder_id"], unique=False,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index(
        op.f("ix_phone_reminder_attempts_reminder_id"), table_name="phone_reminder_attempts"
    )
    op.drop_table("phone_reminder_attempts")
    op.drop_index(op.f("ix_phone_reminders_next_attempt_at"), table_name="phone_reminders")
    op.drop_table("phone_reminders")
    op.drop_table("reminder_prompts")
    op.drop_table("account_contacts")
    op.drop_index(op.f("ix_documents_account_id"), table_name="documents")
    op.drop_table("documents")
    op.drop_table("document_counters")
    op.drop_index(op.f("ix_bank_payments_account_id"), table_name="bank_payments")
    op.drop_table("bank_payments")
    op.drop_table("company_profiles")
