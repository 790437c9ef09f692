"""Asterisk's realtime pjsip tables, the columns callcontrol writes (SQLAlchemy Core).

Names and sizes follow Asterisk's own Alembic migrations
(``contrib/ast-db-manage/config/versions``: ``43956d550a44`` creates
``ps_endpoints``/``ps_auths``/``ps_aors``; later revisions widen ``id`` to 255
and ``aors`` to 2048 and add ``media_address``, ``bind_rtp_to_media_address``
and ``ps_auths.password_digest``). Only the columns callcontrol writes are
declared: res_config_pgsql selects ``*`` and applies every non-NULL column as
the pjsip option of the same name, so missing columns are simply defaults.

Rules kept here:

- ``create_realtime_tables`` creates the tables only when missing. Tables made
  by Asterisk's Alembic (with PostgreSQL ENUM columns such as
  ``ast_bool_values``) are used as they are: text values are sent without a
  ``::VARCHAR`` cast (see ``AstText``), so PostgreSQL casts them to the
  column's own type.
- The digest is written as ``auth_type=md5`` + ``md5_cred=<HA1>``: Asterisk's
  ENUM ``pjsip_auth_type_values_v2`` has no ``digest`` value, and in Asterisk
  22.2+ ``md5_cred`` feeds the same handler as ``password_digest=MD5:<HA1>``
  (older 22.x know only ``md5_cred``). Same credential, every 22.x.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import UserDefinedType


class AstText(UserDefinedType[str]):
    """VARCHAR whose bound values carry no cast (asyncpg's String renders ``$1::VARCHAR``).

    Without a cast PostgreSQL infers the parameter's type from the column, so
    the same statement writes a VARCHAR column and one of Asterisk's ENUMs.
    """

    cache_ok = True

    def __init__(self, length: int) -> None:
        self.length = length

    def get_col_spec(self, **kw: Any) -> str:
        return f"VARCHAR({self.length})"


metadata = sa.MetaData()

ps_endpoints = sa.Table(
    "ps_endpoints",
    metadata,
    sa.Column("id", AstText(255), primary_key=True),
    sa.Column("transport", AstText(40)),
    sa.Column("aors", AstText(2048)),
    sa.Column("auth", AstText(255)),
    sa.Column("context", AstText(40)),
    sa.Column("disallow", AstText(200)),
    sa.Column("allow", AstText(200)),
    sa.Column("direct_media", AstText(5)),
    sa.Column("force_rport", AstText(5)),
    sa.Column("rewrite_contact", AstText(5)),
    sa.Column("rtp_symmetric", AstText(5)),
    sa.Column("trust_id_inbound", AstText(5)),
    sa.Column("trust_id_outbound", AstText(5)),
    sa.Column("from_domain", AstText(40)),
    sa.Column("callerid", AstText(40)),
    sa.Column("media_address", AstText(40)),
    sa.Column("bind_rtp_to_media_address", AstText(5)),
)

ps_auths = sa.Table(
    "ps_auths",
    metadata,
    sa.Column("id", AstText(255), primary_key=True),
    sa.Column("auth_type", AstText(20)),
    sa.Column("username", AstText(40)),
    sa.Column("realm", AstText(255)),
    sa.Column("md5_cred", AstText(40)),
)

ps_aors = sa.Table(
    "ps_aors",
    metadata,
    sa.Column("id", AstText(255), primary_key=True),
    sa.Column("max_contacts", sa.Integer),
    sa.Column("remove_existing", AstText(5)),
    sa.Column("qualify_frequency", sa.Integer),
    sa.Column("support_path", AstText(5)),
)

#: Registered contacts, written by Asterisk itself when sorcery.conf says
#: ``contact = realtime,ps_contacts`` (the cluster: every node sees every
#: phone). Columns as Asterisk's Alembic makes them (all the contact's fields:
#: res_config_pgsql inserts every one). callcontrol never writes this table.
ps_contacts = sa.Table(
    "ps_contacts",
    metadata,
    sa.Column("id", AstText(255), primary_key=True),
    sa.Column("uri", AstText(511)),
    sa.Column("expiration_time", sa.BigInteger),
    sa.Column("qualify_frequency", sa.Integer),
    sa.Column("outbound_proxy", AstText(255)),
    sa.Column("path", sa.Text),
    sa.Column("user_agent", AstText(255)),
    sa.Column("qualify_timeout", sa.Float),
    sa.Column("reg_server", AstText(255)),
    sa.Column("authenticate_qualify", AstText(5)),
    sa.Column("via_addr", AstText(40)),
    sa.Column("via_port", sa.Integer),
    sa.Column("call_id", AstText(255)),
    sa.Column("endpoint", AstText(255)),
    sa.Column("prune_on_boot", AstText(5)),
    sa.Column("qualify_2xx_only", AstText(5)),
)

TABLES: dict[str, sa.Table] = {"endpoint": ps_endpoints, "auth": ps_auths, "aor": ps_aors}


async def create_realtime_tables(engine: AsyncEngine) -> None:
    """Create the ps_* tables callcontrol writes (and ps_contacts), if missing
    (existing ones are kept)."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, checkfirst=True)
        if conn.dialect.name == "postgresql":
            # ps_aors made by an older callcontrol (before Path support) lacks it.
            await conn.exec_driver_sql(
                "ALTER TABLE ps_aors ADD COLUMN IF NOT EXISTS support_path VARCHAR(5)"
            )
