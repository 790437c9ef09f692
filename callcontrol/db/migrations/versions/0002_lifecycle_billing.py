"""Billing state of numbers and the daily billing runs.

``number_billing_state`` (suspended since, deleted on, last reminder for) and
``billing_runs`` (one row per daily run; unfinished = crashed). New tables only:
no column of an existing table changes. ORM classes: ``callcontrol.services.tables``.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "number_billing_state",
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("suspended_since", sa.Date(), nullable=True),
        sa.Column("deleted_on", sa.Date(), nullable=True),
        sa.Column("last_reminder_for", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name=op.f("fk_number_billing_state_number_id_numbers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("number_id", name=op.f("pk_number_billing_state")),
    )
    op.create_table(
        "billing_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("charges_posted", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_runs")),
    )
    op.create_index(op.f("ix_billing_runs_run_date"), "billing_runs", ["run_date"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_billing_runs_run_date"), table_name="billing_runs")
    op.drop_table("billing_runs")
    op.drop_table("number_billing_state")
