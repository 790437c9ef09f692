"""Initial schema: every table of callcontrol.

Written to run on SQLite and PostgreSQL alike; enums are VARCHAR(32) + CHECK,
times TIMESTAMP WITH TIME ZONE, money BIGINT minor units.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The vocabulary as it was when this revision was written (a migration never
# imports the live enums: it must keep meaning what it meant).
NUMBER_KINDS = ("voice", "sms-once")
NUMBER_STATES = (
    "available",
    "reserved",
    "pending",
    "active",
    "suspended",
    "disconnected",
    "testing",
)
FORWARDING_MODES = ("simultaneous", "sequential")
DESTINATION_TYPES = ("sip_account", "sip_uri", "ip", "pstn")
MEDIA_KINDS = ("greeting", "voicemail_greeting")
LEDGER_KINDS = (
    "top_up",
    "setup_fee",
    "monthly_fee",
    "call_charge",
    "refund",
    "discount",
    "adjustment",
)
CALL_DIRECTIONS = ("inbound", "outbound")
DISPOSITIONS = ("answered", "voicemail", "busy", "no_answer", "failed", "rejected", "abandoned")
LEG_OUTCOMES = ("answered", "busy", "no_answer", "failed", "cancelled", "skipped")


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}_valid"))


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("negotiated_bulk_discount_pct", sa.Integer(), server_default="0", nullable=False),
        sa.Column("callerid_number_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "negotiated_bulk_discount_pct BETWEEN 0 AND 100",
            name=op.f("ck_accounts_discount_pct_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=15), nullable=False),
        sa.Column("rate_per_minute_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rates")),
        sa.UniqueConstraint("prefix", name=op.f("uq_rates_prefix")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(role = 'operator') = (account_id IS NULL)",
            name=op.f("ck_api_tokens_operator_has_no_account"),
        ),
        sa.CheckConstraint(
            "role IN ('operator', 'customer')", name=op.f("ck_api_tokens_role_valid")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_api_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "media_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("stored_name", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _one_of("media_files", "kind", MEDIA_KINDS),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_media_files_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_files")),
        sa.UniqueConstraint("stored_name", name=op.f("uq_media_files_stored_name")),
    )
    op.create_index(op.f("ix_media_files_account_id"), "media_files", ["account_id"], unique=False)

    op.create_table(
        "numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("e164", sa.String(length=16), nullable=False),
        sa.Column("country_code", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("previous_account_id", sa.Integer(), nullable=True),
        sa.Column("reservable", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("needs_documents", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("documents_accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_on", sa.Date(), nullable=True),
        sa.Column("monthly_fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("setup_fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("callerid_service", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reserved_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("test_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("test_account_id", sa.Integer(), nullable=True),
        sa.Column("voicemail_enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("greeting_media_id", sa.Integer(), nullable=True),
        sa.Column("voicemail_greeting_media_id", sa.Integer(), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("e164 LIKE '+%'", name=op.f("ck_numbers_e164_plus")),
        _one_of("numbers", "kind", NUMBER_KINDS),
        _one_of("numbers", "state", NUMBER_STATES),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_numbers_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["greeting_media_id"],
            ["media_files.id"],
            name=op.f("fk_numbers_greeting_media_id_media_files"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["previous_account_id"],
            ["accounts.id"],
            name=op.f("fk_numbers_previous_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["test_account_id"],
            ["accounts.id"],
            name=op.f("fk_numbers_test_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["voicemail_greeting_media_id"],
            ["media_files.id"],
            name=op.f("fk_numbers_voicemail_greeting_media_id_media_files"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_numbers")),
        sa.UniqueConstraint("e164", name=op.f("uq_numbers_e164")),
    )
    op.create_index(op.f("ix_numbers_account_id"), "numbers", ["account_id"], unique=False)
    op.create_index("ix_numbers_pool", "numbers", ["state", "country_code", "city"], unique=False)

    # accounts <-> numbers is a cycle: the default CallerID FK comes once both exist.
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_accounts_callerid_number_id_numbers"),
            "numbers",
            ["callerid_number_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "cdrs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("direction", sa.String(length=32), nullable=False),
        sa.Column("did", sa.String(length=16), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("caller", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disposition", sa.String(length=32), nullable=True),
        sa.Column("sip_code", sa.Integer(), nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("reject_reason", sa.String(length=40), nullable=True),
        sa.Column("answered_destination", sa.String(length=300), nullable=True),
        sa.Column("ring_ms", sa.Integer(), nullable=False),
        sa.Column("talk_ms", sa.Integer(), nullable=False),
        sa.Column("cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        _one_of("cdrs", "direction", CALL_DIRECTIONS),
        _one_of("cdrs", "disposition", DISPOSITIONS),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_cdrs_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name=op.f("fk_cdrs_number_id_numbers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdrs")),
    )
    op.create_index(op.f("ix_cdrs_account_id"), "cdrs", ["account_id"], unique=False)
    op.create_index(op.f("ix_cdrs_started_at"), "cdrs", ["started_at"], unique=False)

    op.create_table(
        "forwarding_destinations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("ring_timeout_s", sa.Integer(), nullable=False),
        _one_of("forwarding_destinations", "type", DESTINATION_TYPES),
        sa.CheckConstraint(
            "position IN (1, 2)", name=op.f("ck_forwarding_destinations_position_1_or_2")
        ),
        sa.CheckConstraint(
            "ring_timeout_s > 0", name=op.f("ck_forwarding_destinations_ring_timeout_positive")
        ),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name=op.f("fk_forwarding_destinations_number_id_numbers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forwarding_destinations")),
        sa.UniqueConstraint(
            "number_id", "position", name=op.f("uq_forwarding_destinations_number_position")
        ),
    )
    op.create_table(
        "forwarding_rules",
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        _one_of("forwarding_rules", "mode", FORWARDING_MODES),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name=op.f("fk_forwarding_rules_number_id_numbers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("number_id", name=op.f("pk_forwarding_rules")),
    )
    op.create_table(
        "number_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        _one_of("number_events", "from_state", NUMBER_STATES),
        _one_of("number_events", "to_state", NUMBER_STATES),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name=op.f("fk_number_events_number_id_numbers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_events")),
    )
    op.create_index(
        op.f("ix_number_events_number_id"), "number_events", ["number_id"], unique=False
    )

    op.create_table(
        "sip_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("password_digest", sa.String(length=32), nullable=False),
        sa.Column("presented_number_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sip_accounts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["presented_number_id"],
            ["numbers.id"],
            name=op.f("fk_sip_accounts_presented_number_id_numbers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sip_accounts")),
        sa.UniqueConstraint("login", name=op.f("uq_sip_accounts_login")),
    )
    op.create_index(
        op.f("ix_sip_accounts_account_id"), "sip_accounts", ["account_id"], unique=False
    )

    op.create_table(
        "cdr_legs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cdr_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("destination_type", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("cause", sa.Integer(), nullable=True),
        sa.Column("billed_seconds", sa.Integer(), nullable=False),
        sa.Column("cost_minor", sa.BigInteger(), nullable=False),
        _one_of("cdr_legs", "destination_type", DESTINATION_TYPES),
        _one_of("cdr_legs", "outcome", LEG_OUTCOMES),
        sa.ForeignKeyConstraint(
            ["cdr_id"], ["cdrs.id"], name=op.f("fk_cdr_legs_cdr_id_cdrs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdr_legs")),
    )
    op.create_index(op.f("ix_cdr_legs_cdr_id"), "cdr_legs", ["cdr_id"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=True),
        sa.Column("cdr_id", sa.String(length=36), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        _one_of("ledger_entries", "kind", LEDGER_KINDS),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_ledger_entries_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["cdr_id"], ["cdrs.id"], name=op.f("fk_ledger_entries_cdr_id_cdrs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name=op.f("fk_ledger_entries_number_id_numbers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_entries_idempotency_key")),
    )
    op.create_index(
        "ix_ledger_entries_account_created",
        "ledger_entries",
        ["account_id", "created_at"],
        unique=False,
    )

    op.create_table(
        "voicemail_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("cdr_id", sa.String(length=36), nullable=True),
        sa.Column("caller", sa.String(length=64), nullable=True),
        sa.Column("stored_name", sa.String(length=255), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mail_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_voicemail_messages_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["cdr_id"],
            ["cdrs.id"],
            name=op.f("fk_voicemail_messages_cdr_id_cdrs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name=op.f("fk_voicemail_messages_number_id_numbers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voicemail_messages")),
    )
    op.create_index(
        op.f("ix_voicemail_messages_account_id"), "voicemail_messages", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_voicemail_messages_account_id"), table_name="voicemail_messages")

    op.drop_table("voicemail_messages")
    op.drop_index("ix_ledger_entries_account_created", table_name="ledger_entries")

    op.drop_table("ledger_entries")
    op.drop_index(op.f("ix_cdr_legs_cdr_id"), table_name="cdr_legs")

    op.drop_table("cdr_legs")
    op.drop_index(op.f("ix_sip_accounts_account_id"), table_name="sip_accounts")

    op.drop_table("sip_accounts")
    op.drop_index(op.f("ix_number_events_number_id"), table_name="number_events")

    op.drop_table("number_events")
    op.drop_table("forwarding_rules")
    op.drop_table("forwarding_destinations")
    op.drop_index(op.f("ix_cdrs_started_at"), table_name="cdrs")
    op.drop_index(op.f("ix_cdrs_account_id"), table_name="cdrs")

    op.drop_table("cdrs")
    op.drop_index("ix_numbers_pool", table_name="numbers")
    op.drop_index(op.f("ix_numbers_account_id"), table_name="numbers")

    with op.batch_alter_table("accounts") as batch_op:
        batch_op.drop_constraint(op.f("fk_accounts_callerid_number_id_numbers"), type_="foreignkey")
    op.drop_table("numbers")
    op.drop_index(op.f("ix_media_files_account_id"), table_name="media_files")

    op.drop_table("media_files")
    op.drop_table("api_tokens")
    op.drop_table("rates")
    op.drop_table("accounts")
