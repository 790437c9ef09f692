"""The operator's side: token expiry and labels, the carrier's expected activation
time, end users' documents (``number_documents``).

``api_tokens.expires_at`` (None: until revoked) and ``api_tokens.label`` (what the
token is for, shown in listings instead of the secret); ``numbers.expected_activation``
(free text from the inventory import, e.g. "1-2 days"). New nullable/defaulted
columns only.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("label", sa.String(length=100), server_default="", nullable=False)
        )
    with op.batch_alter_table("numbers") as batch:
        batch.add_column(sa.Column("expected_activation", sa.String(length=50), nullable=True))
    op.create_table(
        "number_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("content_type", sa.String(length=50), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("stored_name", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_number_documents_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["number_id"], ["numbers.id"],
            name=op.f("fk_number_documents_number_id_numbers"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_documents")),
        sa.UniqueConstraint("stored_name", name=op.f("uq_number_documents_stored_name")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_number_documents_account_id"), "number_documents", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_number_documents_number_id"), "number_documents", ["number_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_number_documents_number_id"), table_name="number_documents")
    op.drop_index(op.f("ix_number_documents_account_id"), table_name="number_documents")
    op.drop_table("number_documents")
    with op.batch_alter_table("numbers") as batch:
        batch.drop_column("expected_activation")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("label")
        batch.drop_column("expires_at")
