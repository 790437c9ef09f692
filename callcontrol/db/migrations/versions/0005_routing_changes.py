"""The routing change log: the database itself records "this DID's routing may
have changed", whoever writes (engine, API, CLI, billing run).

``routing_changes`` (ORM class: ``callcontrol.db.models.RoutingChange``; read by
``callcontrol.repositories.routing_changes``) gets one row per change, written by
triggers on every table ``SqlNumberDirectory.snapshot`` reads:

- ``numbers``: any INSERT/UPDATE/DELETE logs ``number_id`` and ``e164`` (the old
  one for a DELETE, and both when an UPDATE changes the e164);
- ``accounts``: an UPDATE that changes ``balance_minor`` or ``currency`` logs
  ``account_id`` (the reader resolves it to the account's numbers);
- ``forwarding_rules``, ``forwarding_destinations``: any INSERT/UPDATE/DELETE
  logs ``number_id``;
- ``media_files``: an UPDATE logs the numbers using the file as a greeting. A
  DELETE needs no trigger of its own: the numbers' foreign keys are ON DELETE
  SET NULL, and that UPDATE of ``numbers`` fires the numbers trigger on both
  backends (``tests/component/test_routing_changes.py`` checks it);
- ``rates``: any change logs a row with every column NULL, meaning "every
  number" (rates are looked up by prefix). PostgreSQL logs one per statement,
  SQLite (row triggers only) one per row.

The log has no foreign keys (it outlives what it names). SQLite gets
AUTOINCREMENT so an id is never reused once pruned rows are gone: readers keep
a cursor on it. A later migration that batch-alters (table copy on SQLite) one
of the tables above drops its SQLite triggers with the old table and must
create them again.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LOG = "INSERT INTO routing_changes"
_MEDIA_USERS = (
    "SELECT id FROM numbers WHERE greeting_media_id IN (OLD.id, NEW.id)"
    " OR voicemail_greeting_media_id IN (OLD.id, NEW.id)"
)
_BALANCE_MOVED = (
    "OLD.balance_minor IS DISTINCT FROM NEW.balance_minor"
    " OR OLD.currency IS DISTINCT FROM NEW.currency"
)

# SQLite: (trigger name, event and table, WHEN or None, body statements).
_SQLITE_TRIGGERS: tuple[tuple[str, str, str | None, tuple[str, ...]], ...] = (
    ("routing_changes_numbers_insert", "INSERT ON numbers", None,
     (f"{_LOG} (number_id, e164) VALUES (NEW.id, NEW.e164)",)),
    ("routing_changes_numbers_update", "UPDATE ON numbers", None,
     (f"{_LOG} (number_id, e164) VALUES (NEW.id, NEW.e164)",
      f"{_LOG} (number_id, e164) SELECT OLD.id, OLD.e164 WHERE OLD.e164 IS NOT NEW.e164")),
    ("routing_changes_numbers_delete", "DELETE ON numbers", None,
     (f"{_LOG} (number_id, e164) VALUES (OLD.id, OLD.e164)",)),
    ("routing_changes_accounts_update", "UPDATE ON accounts",
     _BALANCE_MOVED.replace("IS DISTINCT FROM", "IS NOT"),
     (f"{_LOG} (account_id) VALUES (NEW.id)",)),
    *(
        (f"routing_changes_{table}_{event.lower()}", f"{event} ON {table}", None, body)
        for table in ("forwarding_rules", "forwarding_destinations")
        for event, body in (
            ("INSERT", (f"{_LOG} (number_id) VALUES (NEW.number_id)",)),
            ("UPDATE", (f"{_LOG} (number_id) VALUES (NEW.number_id)",
                        f"{_LOG} (number_id) SELECT OLD.number_id"
                        " WHERE OLD.number_id IS NOT NEW.number_id")),
            ("DELETE", (f"{_LOG} (number_id) VALUES (OLD.number_id)",)),
        )
    ),
    ("routing_changes_media_files_update", "UPDATE ON media_files", None,
     (f"{_LOG} (number_id) {_MEDIA_USERS}",)),
    *(
        (f"routing_changes_rates_{event.lower()}", f"{event} ON rates", None,
         (f"{_LOG} (number_id) VALUES (NULL)",))
        for event in ("INSERT", "UPDATE", "DELETE")
    ),
)  # fmt: skip

# PostgreSQL: (function name, plpgsql body).
_PG_FUNCTIONS: tuple[tuple[str, str], ...] = (
    ("routing_changes_log_number", f"""
        IF TG_OP = 'DELETE' THEN
            {_LOG} (number_id, e164) VALUES (OLD.id, OLD.e164);
            RETURN NULL;
        END IF;
        {_LOG} (number_id, e164) VALUES (NEW.id, NEW.e164);
        IF TG_OP = 'UPDATE' AND OLD.e164 IS DISTINCT FROM NEW.e164 THEN
            {_LOG} (number_id, e164) VALUES (OLD.id, OLD.e164);
        END IF;
        RETURN NULL;"""),
    ("routing_changes_log_account", f"""
        {_LOG} (account_id) VALUES (NEW.id);
        RETURN NULL;"""),
    # forwarding_rules and forwarding_destinations: both have number_id.
    ("routing_changes_log_number_id", f"""
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            {_LOG} (number_id) VALUES (OLD.number_id);
        END IF;
        IF TG_OP = 'INSERT'
           OR (TG_OP = 'UPDATE' AND NEW.number_id IS DISTINCT FROM OLD.number_id) THEN
            {_LOG} (number_id) VALUES (NEW.number_id);
        END IF;
        RETURN NULL;"""),
    ("routing_changes_log_media", f"""
        {_LOG} (number_id) {_MEDIA_USERS};
        RETURN NULL;"""),
    ("routing_changes_log_everything", f"""
        {_LOG} (number_id) VALUES (NULL);
        RETURN NULL;"""),
)  # fmt: skip

# PostgreSQL: (trigger name, table, events, level and WHEN, function).
_PG_TRIGGERS: tuple[tuple[str, str, str, str, str], ...] = (
    ("routing_changes_numbers", "numbers", "INSERT OR UPDATE OR DELETE",
     "FOR EACH ROW", "routing_changes_log_number"),
    ("routing_changes_accounts", "accounts", "UPDATE",
     f"FOR EACH ROW WHEN ({_BALANCE_MOVED})", "routing_changes_log_account"),
    ("routing_changes_forwarding_rules", "forwarding_rules", "INSERT OR UPDATE OR DELETE",
     "FOR EACH ROW", "routing_changes_log_number_id"),
    ("routing_changes_forwarding_destinations", "forwarding_destinations",
     "INSERT OR UPDATE OR DELETE", "FOR EACH ROW", "routing_changes_log_number_id"),
    ("routing_changes_media_files", "media_files", "UPDATE",
     "FOR EACH ROW", "routing_changes_log_media"),
    ("routing_changes_rates", "rates", "INSERT OR UPDATE OR DELETE OR TRUNCATE",
     "FOR EACH STATEMENT", "routing_changes_log_everything"),
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "routing_changes",
        sa.Column("id", _BIG, autoincrement=True, nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("e164", sa.String(16), nullable=True),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_routing_changes_changed_at"), "routing_changes", ["changed_at"], unique=False
    )
    if op.get_bind().dialect.name == "sqlite":
        for name, on, when, body in _SQLITE_TRIGGERS:
            condition = f" WHEN {when}" if when else ""
            statements = "".join(f" {statement};" for statement in body)
            op.execute(f"CREATE TRIGGER {name} AFTER {on}{condition} BEGIN{statements} END")
    else:
        for function, plpgsql in _PG_FUNCTIONS:
            op.execute(
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
                f"\n    BEGIN{plpgsql}\n    END;\n$$"
            )
        for name, table, events, level, function in _PG_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {events} ON {table} {level}"
                f" EXECUTE FUNCTION {function}()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name, *_ in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for name, table, *_ in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for function, _body in _PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_index(op.f("ix_routing_changes_changed_at"), table_name="routing_changes")
    op.drop_table("routing_changes")
