"""SIP accounts: the database is the truth, a back-end makes Asterisk agree with it.

``ProvisioningService`` creates, re-keys and deletes customers' SIP accounts in
``sip_accounts`` and tells its back-end; ``sync()`` rebuilds Asterisk's view
from the whole database and says what changed. Two back-ends:

- ``FileBackend`` (default): renders ``pjsip_callcontrol.conf``, replaces it
  atomically and reloads res_pjsip through AMI, coalescing bursts of changes
  into one reload;
- ``RealtimeBackend``: writes Asterisk's own ``ps_endpoints``/``ps_auths``/
  ``ps_aors`` rows, which Asterisk reads on demand (no reload).

Rules kept here:

- A plain password exists only in the return value of ``create_sip_account``
  and ``reset_password`` (to be shown once); the database and Asterisk get
  HA1 = md5("login:realm:password") with ``realm`` from the settings.
- Everything is validated before anything is written: a bad login or domain,
  a login taken (by another account, a trunk or the static pjsip.conf's
  ``callcontrol-*``/``transport-*`` sections) raises ``InvalidInput`` and
  neither the database nor Asterisk changes. A login already in use by another
  SIP account is ``LoginTaken``, an unknown one ``SipAccountNotFound`` (both
  ``InvalidInput``, so callers may tell them apart or not).
- Deleting a SIP account also deletes, in the same transaction, the forwarding
  destinations of its owner's numbers that rang it: a number must not go on
  ringing a login that no longer exists (or that someone else takes next).
- Trunks come from the settings (``provisioning.trunks``; the carrier only:
  customers' own servers are dialled by URI through ``callcontrol-external``
  and need no pjsip object). The test bed keeps its carrier static in
  pjsip.conf, so the default is no trunk.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Account, ForwardingDestination, Number, SipAccount
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import DestinationType
from provisioning.digest import generate_password, ha1_md5
from provisioning.file_backend import FileBackend
from provisioning.pjsip import SipAccountSpec
from provisioning.realtime_backend import RealtimeBackend
from provisioning.settings import ProvisioningSettings
from provisioning.state import (
    Backend,
    DesiredState,
    PjsipReloader,
    ReloadStatus,
    StateSource,
    SyncReport,
)

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]
# Names of the static sections of the deployment's pjsip.conf; no login may take them.
RESERVED_LOGIN_PREFIXES = ("callcontrol", "transport")


class ProvisioningError(Exception):
    """The database changed but Asterisk could not be told; ``sync()`` will repair it."""

    code: ClassVar[str] = "provisioning_failed"


class LoginTaken(InvalidInput):
    """The SIP login is already used by another SIP account."""

    code: ClassVar[str] = "login_taken"

    def __init__(self, login: str) -> None:
        super().__init__(f"SIP login {login!r} is already taken")
        self.login = login


class SipAccountNotFound(InvalidInput):
    """No SIP account has this login."""

    code: ClassVar[str] = "sip_account_not_found"

    def __init__(self, login: str) -> None:
        super().__init__(f"no SIP account {login!r}")
        self.login = login


class ProvisioningService:
    def __init__(
        self, sessions: Sessions, backend: Backend, settings: ProvisioningSettings
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._settings = settings
        self._trunks = tuple(t.to_spec() for t in settings.trunks)  # validated once, at start

    @property
    def backend(self) -> Backend:
        return self._backend

    async def create_sip_account(
        self, account_id: int, login: str, domain: str | None = None
    ) -> tuple[SipAccount, str]:
        """A new SIP account of ``account_id``; returns it with its password (shown once)."""
        domain = (domain or self._settings.sip_domain).lower()
        password = generate_password()
        spec = self._spec(login, domain, ha1_md5(login, self._settings.realm, password))
        self._check_not_static(login)
        try:
            async with self._sessions() as session, session.begin():
                account = await session.get(Account, account_id)
                if account is None or account.erased_at is not None:
                    raise InvalidInput(f"account {account_id} does not exist")
                await self._check_login_free(session, login)
                row = SipAccount(
                    account_id=account_id,
                    login=login,
                    domain=domain,
                    password_digest=spec.password_digest_md5_hex,
                )
                session.add(row)
        except IntegrityError as exc:  # a concurrent create took the login first
            raise LoginTaken(login) from exc
        log.info("SIP account %s@%s created for account %s", login, domain, account_id)
        await self._tell(self._backend.account_changed(spec))
        return row, password

    async def reset_password(self, login: str) -> tuple[SipAccount, str]:
        """A new password for ``login`` (the old one stops working); shown once."""
        password = generate_password()
        digest = ha1_md5(login, self._settings.realm, password)
        async with self._sessions() as session, session.begin():
            row = await self._get(session, login)
            row.password_digest = digest
            spec = self._spec(row.login, row.domain, digest)
        log.info("SIP account %s: password reset", login)
        await self._tell(self._backend.account_changed(spec))
        return row, password

    async def delete_sip_account(self, login: str) -> None:
        """Delete ``login`` and the forwarding destinations of its owner's numbers ringing it."""
        async with self._sessions() as session, session.begin():
            row = await self._get(session, login)
            await session.execute(self._forwarding_to(row))
            await session.delete(row)
        log.info("SIP account %s deleted", login)
        await self._tell(self._backend.account_removed(login))

    async def sync(self) -> SyncReport:
        """Make Asterisk match the database; idempotent. Says what changed."""
        report = await self._backend.sync(await self.desired_state())
        log.info("provisioning sync: %s", report.summary())
        return report

    async def desired_state(self) -> DesiredState:
        query = sa.select(SipAccount).order_by(SipAccount.login)
        accounts: list[SipAccountSpec] = []
        async with self._sessions() as session:
            for row in (await session.scalars(query)).all():
                try:
                    accounts.append(self._spec(row.login, row.domain, row.password_digest))
                except InvalidInput as exc:  # one bad row must not take every phone down
                    log.error("SIP account %s left out of Asterisk: %s", row.login, exc)
        return DesiredState(tuple(accounts), self._trunks)

    # --- helpers ------------------------------------------------------------

    def _spec(self, login: str, domain: str, digest: str) -> SipAccountSpec:
        # No static ``callerid`` on the endpoint: which number a call shows
        # depends on its destination's country, so the engine decides it per
        # call from the database (a copy here could only go stale).
        s = self._settings
        return SipAccountSpec(
            login=login,
            domain=domain,
            password_digest_md5_hex=digest,
            max_contacts=s.max_contacts,
            qualify_frequency=s.qualify_frequency,
            transport=s.transport,
        )

    def _check_not_static(self, login: str) -> None:
        if login.startswith(RESERVED_LOGIN_PREFIXES):
            raise InvalidInput(
                f"SIP login {login!r} is reserved: names starting with "
                f"{' or '.join(RESERVED_LOGIN_PREFIXES)} belong to Asterisk's own configuration"
            )
        if any(t.name == login for t in self._trunks):
            raise InvalidInput(f"SIP login {login!r} is the name of a trunk")

    @staticmethod
    async def _check_login_free(session: AsyncSession, login: str) -> None:
        taken = await session.scalar(sa.select(SipAccount.id).where(SipAccount.login == login))
        if taken is not None:
            raise LoginTaken(login)

    @staticmethod
    async def _get(session: AsyncSession, login: str) -> SipAccount:
        row = await session.scalar(
            sa.select(SipAccount).where(SipAccount.login == login).with_for_update()
        )
        if row is None:
            raise SipAccountNotFound(login)
        return row

    @staticmethod
    def _forwarding_to(row: SipAccount) -> sa.Delete:
        """The forwarding destinations of the owner's numbers that ring ``row``."""
        numbers = sa.select(Number.id).where(Number.account_id == row.account_id)
        return sa.delete(ForwardingDestination).where(
            ForwardingDestination.type == DestinationType.SIP_ACCOUNT,
            ForwardingDestination.target == row.login,
            ForwardingDestination.number_id.in_(numbers),
        )

    @staticmethod
    async def _tell(update: Awaitable[None]) -> None:
        try:
            await update
        except Exception as exc:
            log.exception("Asterisk not updated")
            raise ProvisioningError(
                f"saved, but Asterisk was not updated ({exc}); `callcontrol provision sync` "
                "repairs it"
            ) from exc


def build_backend(
    settings: ProvisioningSettings,
    *,
    source: StateSource,
    reloader: PjsipReloader | None,
) -> Backend:
    """The back-end the settings name."""
    if settings.backend == "realtime":
        assert settings.realtime_url is not None  # the settings validator guarantees it
        return RealtimeBackend.from_url(settings.realtime_url.get_secret_value(), settings)
    return FileBackend.from_settings(settings, source=source, reloader=reloader)


@asynccontextmanager
async def open_provisioning(
    settings: ProvisioningSettings, sessions: Sessions, *, reloader: PjsipReloader | None
) -> AsyncIterator[ProvisioningService]:
    """A ready service; on exit pending reloads are flushed and the back-end closed."""
    holder: list[ProvisioningService] = []

    async def source() -> DesiredState:
        return await holder[0].desired_state()

    backend = build_backend(settings, source=source, reloader=reloader)
    service = ProvisioningService(sessions, backend, settings)
    holder.append(service)
    try:
        yield service
        await backend.flush()
    finally:
        await backend.close()


__all__: Sequence[str] = (
    "Backend",
    "DesiredState",
    "LoginTaken",
    "ProvisioningError",
    "ProvisioningService",
    "ReloadStatus",
    "SipAccountNotFound",
    "StateSource",
    "SyncReport",
    "build_backend",
    "open_provisioning",
)
