"""The realtime back-end: SIP accounts as rows of Asterisk's ps_endpoints/ps_auths/ps_aors.

The callcontrol database and the realtime database are two databases of the
run's backend (with CALLCONTROL_TEST_DB=postgresql: a real PostgreSQL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callcontrol.db.engine import create_engine
from callcontrol.db.models import Account, SipAccount
from callcontrol.domain.errors import InvalidInput
from callcontrol.settings import DatabaseSettings
from provisioning.digest import ha1_md5
from provisioning.realtime_backend import RealtimeBackend
from provisioning.realtime_schema import ps_aors, ps_auths, ps_endpoints
from provisioning.service import ProvisioningService
from provisioning.settings import ProvisioningSettings

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class Bed:
    service: ProvisioningService
    realtime: AsyncEngine
    sessions: Sessions
    account_id: int

    async def rows(self, table: sa.Table) -> dict[str, dict[str, Any]]:
        async with self.realtime.connect() as conn:
            result = await conn.execute(sa.select(table))
            return {r["id"]: dict(r) for r in result.mappings()}


@pytest.fixture
async def bed(db_session: Sessions, empty_db_url: str) -> AsyncIterator[Bed]:
    settings = ProvisioningSettings(
        backend="realtime", realtime_url=SecretStr(empty_db_url), sip_domain="sip.example.net"
    )
    realtime = create_engine(DatabaseSettings(url=empty_db_url))
    backend = RealtimeBackend(realtime, realm=settings.realm)
    service = ProvisioningService(db_session, backend, settings)
    async with db_session() as session, session.begin():
        account = Account(name="Acme", email="ops@acme.example", currency="EUR")
        session.add(account)
        await session.flush()
        account_id = account.id
    try:
        yield Bed(service, realtime, db_session, account_id)
    finally:
        await backend.close()
        await realtime.dispose()


async def test_a_new_account_is_three_rows_asterisk_reads_at_once(bed: Bed) -> None:
    _, password = await bed.service.create_sip_account(bed.account_id, "alice01")

    endpoint = (await bed.rows(ps_endpoints))["alice01"]
    auth = (await bed.rows(ps_auths))["alice01"]
    aor = (await bed.rows(ps_aors))["alice01"]
    assert endpoint["auth"] == endpoint["aors"] == "alice01"
    assert endpoint["context"] == "callcontrol-outbound"
    assert endpoint["disallow"] == "all" and endpoint["allow"] == "ulaw,alaw"
    assert endpoint["from_domain"] == "sip.example.net" and endpoint["direct_media"] == "no"
    assert auth == {
        "id": "alice01",
        "auth_type": "md5",
        "username": "alice01",
        "realm": "callcontrol",
        "md5_cred": ha1_md5("alice01", "callcontrol", password),
    }
    assert aor["max_contacts"] == 1 and aor["remove_existing"] == "yes"
    everything = repr([await bed.rows(t) for t in (ps_endpoints, ps_auths, ps_aors)])
    assert password not in everything


async def test_a_refused_account_writes_no_row(bed: Bed) -> None:
    await bed.service.create_sip_account(bed.account_id, "alice01")
    with pytest.raises(InvalidInput):
        await bed.service.create_sip_account(bed.account_id, "alice01")
    with pytest.raises(InvalidInput):
        await bed.service.create_sip_account(bed.account_id, "bob001", "not a domain")
    assert list(await bed.rows(ps_endpoints)) == ["alice01"]
    assert list(await bed.rows(ps_auths)) == ["alice01"]


async def test_deleting_an_account_removes_its_rows(bed: Bed) -> None:
    await bed.service.create_sip_account(bed.account_id, "alice01")
    await bed.service.create_sip_account(bed.account_id, "bob001")
    await bed.service.delete_sip_account("alice01")
    for table in (ps_endpoints, ps_auths, ps_aors):
        assert list(await bed.rows(table)) == ["bob001"]


async def test_reset_password_rewrites_the_digest(bed: Bed) -> None:
    await bed.service.create_sip_account(bed.account_id, "alice01")
    _, new = await bed.service.reset_password("alice01")
    auth = (await bed.rows(ps_auths))["alice01"]
    assert auth["md5_cred"] == ha1_md5("alice01", "callcontrol", new)


async def test_sync_makes_the_tables_match_the_database_and_is_idempotent(bed: Bed) -> None:
    async with bed.sessions() as session, session.begin():
        for login in ("dave01", "erin01"):
            session.add(
                SipAccount(
                    account_id=bed.account_id,
                    login=login,
                    domain="sip.example.net",
                    password_digest=ha1_md5(login, "callcontrol", "y" * 24),
                )
            )
    first = await bed.service.sync()
    assert sorted(str(s) for s in first.changes.added) == [
        "aor dave01", "aor erin01", "auth dave01", "auth erin01",
        "endpoint dave01", "endpoint erin01",
    ]  # fmt: skip
    assert first.reload == "not-needed"

    second = await bed.service.sync()
    assert second.changes.is_empty

    async with bed.realtime.begin() as conn:  # drift: a stray row, a tampered digest
        await conn.execute(sa.insert(ps_endpoints).values(id="stray", context="x"))
        await conn.execute(
            sa.update(ps_auths).where(ps_auths.c.id == "erin01").values(md5_cred="0" * 32)
        )
    third = await bed.service.sync()
    assert [str(s) for s in third.changes.removed] == ["endpoint stray"]
    assert [str(s) for s in third.changes.changed] == ["auth erin01"]
    assert (await bed.rows(ps_auths))["erin01"]["md5_cred"] == ha1_md5(
        "erin01", "callcontrol", "y" * 24
    )
    assert (await bed.service.sync()).changes.is_empty


# Asterisk's own Alembic makes these columns PostgreSQL ENUMs (43956d550a44 and later).
_ASTERISK_DDL = (
    "CREATE TYPE ast_bool_values AS ENUM ('0', '1', 'off', 'on', 'false', 'true', 'no', 'yes')",
    "CREATE TYPE pjsip_auth_type_values_v2 AS ENUM ('md5', 'userpass', 'google_oauth')",
    "CREATE TABLE ps_endpoints (id VARCHAR(255) NOT NULL UNIQUE, transport VARCHAR(40), "
    "aors VARCHAR(2048), auth VARCHAR(255), context VARCHAR(40), disallow VARCHAR(200), "
    "allow VARCHAR(200), direct_media ast_bool_values, force_rport ast_bool_values, "
    "rewrite_contact ast_bool_values, rtp_symmetric ast_bool_values, "
    "trust_id_inbound ast_bool_values, trust_id_outbound ast_bool_values, "
    "send_pai ast_bool_values, from_domain VARCHAR(40), callerid VARCHAR(40), "
    "media_address VARCHAR(40), bind_rtp_to_media_address ast_bool_values, "
    "dtmf_mode VARCHAR(40))",
    "CREATE TABLE ps_auths (id VARCHAR(255) NOT NULL UNIQUE, "
    "auth_type pjsip_auth_type_values_v2, nonce_lifetime INTEGER, md5_cred VARCHAR(40), "
    "password VARCHAR(80), realm VARCHAR(255), username VARCHAR(40), "
    "password_digest VARCHAR(1024))",
    "CREATE TABLE ps_aors (id VARCHAR(255) NOT NULL UNIQUE, contact VARCHAR(255), "
    "max_contacts INTEGER, remove_existing ast_bool_values, qualify_frequency INTEGER)",
)


@pytest.mark.postgresql_only  # Asterisk's ENUM columns exist on PostgreSQL only
async def test_tables_made_by_asterisks_alembic_with_enum_columns_are_written(bed: Bed) -> None:
    async with bed.realtime.begin() as conn:
        for statement in _ASTERISK_DDL:
            await conn.exec_driver_sql(statement)
    await bed.service.create_sip_account(bed.account_id, "alice01")
    await bed.service.create_sip_account(bed.account_id, "bob001")
    await bed.service.delete_sip_account("bob001")
    assert (await bed.service.sync()).changes.is_empty
    async with bed.realtime.connect() as conn:
        row = (
            await conn.exec_driver_sql(
                "SELECT auth_type::text, direct_media::text FROM ps_auths "
                "JOIN ps_endpoints USING (id) WHERE id = 'alice01'"
            )
        ).one()
    assert tuple(row) == ("md5", "no")
