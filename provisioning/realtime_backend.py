"""The realtime back-end: SIP accounts as rows of Asterisk's ps_endpoints/ps_auths/ps_aors.

Asterisk reads these through res_config_pgsql + res_sorcery_realtime when a
phone registers or a call needs the endpoint, so a committed row is live at
once: no reload. ``asterisk-conf/realtime/`` holds the Asterisk side
(``extconfig.conf``, ``sorcery.conf``, ``res_pgsql.conf.template``).

Rules kept here:

- The three ps_* tables of ``realtime_url`` belong to callcontrol: ``sync``
  deletes rows it would not write. Transports, trunks and templates stay in
  the static pjsip.conf (sorcery reads both: config first, then realtime).
- Realtime has no templates, so each endpoint row carries the options of
  pjsip.conf's ``[callcontrol-account](!)`` itself (``ENDPOINT_POLICY``).
- An account's three rows change in one transaction; Asterisk never sees an
  endpoint without its auth.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from provisioning.pjsip import Changes, SectionId, SipAccountSpec
from provisioning.realtime_schema import TABLES, create_realtime_tables
from provisioning.settings import ProvisioningSettings
from provisioning.state import DesiredState, SyncReport

log = logging.getLogger(__name__)

DEFAULT_TRANSPORT = "transport-udp"
# The account template of pjsip.conf, spelled out (realtime rows cannot inherit).
ENDPOINT_POLICY: dict[str, str] = {
    "direct_media": "no",
    "rtp_symmetric": "yes",
    "force_rport": "yes",
    "rewrite_contact": "yes",
    "trust_id_inbound": "no",
    "trust_id_outbound": "yes",
}

Row = dict[str, Any]


def account_rows(
    spec: SipAccountSpec,
    *,
    realm: str,
    transport: str | None = None,
    media_address: str | None = None,
    support_path: bool = False,
) -> dict[str, Row]:
    """The ps_endpoints, ps_auths and ps_aors rows of one account, keyed by kind."""
    endpoint: Row = {
        "id": spec.login,
        "transport": spec.transport or transport or DEFAULT_TRANSPORT,
        "aors": spec.login,
        "auth": spec.login,
        "context": spec.context,
        "disallow": "all",
        "allow": ",".join(spec.codecs),
        **ENDPOINT_POLICY,
        "from_domain": spec.domain.lower(),
        "callerid": f"<{spec.callerid}>" if spec.callerid else None,
        "media_address": media_address,
        "bind_rtp_to_media_address": "yes" if media_address else None,
    }
    auth: Row = {
        "id": spec.login,
        "auth_type": "md5",
        "username": spec.login,
        "realm": realm,
        "md5_cred": spec.password_digest_md5_hex.lower(),
    }
    aor: Row = {
        "id": spec.login,
        "max_contacts": spec.max_contacts,
        "remove_existing": "yes",
        "qualify_frequency": spec.qualify_frequency,
    }
    if support_path:  # only then: tables made before the column existed stay writable
        aor["support_path"] = "yes"
        # Behind a proxy that adds Path, a REGISTER's source is the proxy: the
        # contact is kept as the phone sent it, the proxy's Path leads to it.
        endpoint["rewrite_contact"] = "no"
    return {"endpoint": endpoint, "auth": auth, "aor": aor}


class RealtimeBackend:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        realm: str,
        transport: str | None = None,
        media_address: str | None = None,
        support_path: bool = False,
        owns_engine: bool = False,
    ) -> None:
        self._engine = engine
        self._realm = realm
        self._transport = transport
        self._media_address = media_address
        self._support_path = support_path
        self._owns_engine = owns_engine
        self._schema_ready = False

    @classmethod
    def from_url(cls, url: str, settings: ProvisioningSettings) -> RealtimeBackend:
        engine = create_async_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        return cls(
            engine,
            realm=settings.realm,
            transport=settings.transport,
            media_address=settings.media_address,
            support_path=settings.support_path,
            owns_engine=True,
        )

    async def account_changed(self, spec: SipAccountSpec) -> None:
        rows = self._rows(spec)
        await self._ensure_schema()
        async with self._engine.begin() as conn:
            for kind, table in TABLES.items():
                await conn.execute(sa.delete(table).where(table.c.id == spec.login))
                await conn.execute(sa.insert(table).values(rows[kind]))

    async def account_removed(self, login: str) -> None:
        await self._ensure_schema()
        async with self._engine.begin() as conn:
            for table in TABLES.values():
                await conn.execute(sa.delete(table).where(table.c.id == login))

    async def sync(self, state: DesiredState) -> SyncReport:
        desired: dict[str, dict[str, Row]] = {kind: {} for kind in TABLES}
        for spec in state.accounts:
            for kind, row in self._rows(spec).items():
                desired[kind][spec.login] = row
        await self._ensure_schema()
        added: list[SectionId] = []
        removed: list[SectionId] = []
        changed: list[SectionId] = []
        async with self._engine.begin() as conn:
            for kind, table in TABLES.items():
                current = await _read(conn, table)
                want = desired[kind]
                gone = sorted(current.keys() - want.keys())
                new = sorted(want.keys() - current.keys())
                both = want.keys() & current.keys()
                diff = sorted(k for k in both if not _same(want[k], current[k]))
                if gone or diff:
                    await conn.execute(sa.delete(table).where(table.c.id.in_(gone + diff)))
                if new or diff:
                    await conn.execute(sa.insert(table), [want[k] for k in new + diff])
                added += (SectionId(kind, k) for k in new)
                removed += (SectionId(kind, k) for k in gone)
                changed += (SectionId(kind, k) for k in diff)
        changes = Changes(tuple(sorted(added)), tuple(sorted(removed)), tuple(sorted(changed)))
        return SyncReport(changes, "not-needed")

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()

    def _rows(self, spec: SipAccountSpec) -> dict[str, Row]:
        return account_rows(
            spec,
            realm=self._realm,
            transport=self._transport,
            media_address=self._media_address,
            support_path=self._support_path,
        )

    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            await create_realtime_tables(self._engine)
            self._schema_ready = True


async def _read(conn: AsyncConnection, table: sa.Table) -> dict[str, Row]:
    result = await conn.execute(sa.select(*table.c))
    return {row["id"]: dict(row) for row in result.mappings()}


def _same(want: Row, current: Row) -> bool:
    return all(current.get(column) == value for column, value in want.items())
