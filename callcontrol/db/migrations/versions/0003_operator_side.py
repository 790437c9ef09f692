"""The operator's side: token expiry and labels, the carrier's expected activation time.

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


def downgrade() -> None:
    with op.batch_alter_table("numbers") as batch:
        batch.drop_column("expected_activation")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("label")
        batch.drop_column("expires_at")
