"""The file back-end: SIP accounts become pjsip_callcontrol.conf, one coalesced reload via AMI.

Real database (SQLite or PostgreSQL per run), real files, a fake AMI server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.fake_ami import FakeAmi

from callcontrol.db.models import Account, ForwardingDestination, Number, SipAccount
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import DestinationType, NumberKind, NumberState
from provisioning.ami import AmiClient
from provisioning.digest import ha1_md5
from provisioning.file_backend import FileBackend, atomic_write
from provisioning.service import (
    DesiredState,
    LoginTaken,
    ProvisioningService,
    SipAccountNotFound,
    open_provisioning,
)
from provisioning.settings import ProvisioningSettings

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class Bed:
    service: ProvisioningService
    backend: FileBackend
    ami: FakeAmi
    path: Path
    sessions: Sessions
    account_id: int

    def text(self) -> str:
        return self.path.read_text()


async def _account(sessions: Sessions, name: str = "Acme") -> int:
    async with sessions() as session, session.begin():
        account = Account(name=name, email="ops@acme.example", currency="EUR")
        session.add(account)
        await session.flush()
        return account.id


def _settings(tmp_path: Path, **overrides: object) -> ProvisioningSettings:
    values: dict[str, object] = {
        "file_path": tmp_path / "etc" / "pjsip_callcontrol.conf",
        "reload_coalesce_s": 0.05,
        "reload_max_delay_s": 60.0,
        "reload_retry_s": 0.05,
        "sip_domain": "sip.example.net",
    }
    return ProvisioningSettings.model_validate(values | overrides)


@asynccontextmanager
async def _bed(sessions: Sessions, tmp_path: Path, **overrides: object) -> AsyncIterator[Bed]:
    async with FakeAmi() as ami:
        client = AmiClient(ami.settings(), timeout_s=2.0)
        settings = _settings(tmp_path, **overrides)
        try:
            async with open_provisioning(settings, sessions, reloader=client) as service:
                backend = service.backend
                assert isinstance(backend, FileBackend)
                account_id = await _account(sessions)
                yield Bed(service, backend, ami, settings.file_path, sessions, account_id)
        finally:
            await client.close()


@pytest.fixture
async def bed(db_session: Sessions, tmp_path: Path) -> AsyncIterator[Bed]:
    async with _bed(db_session, tmp_path) as made:
        yield made


async def test_a_new_account_is_written_with_its_digest_and_never_its_password(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    row, password = await bed.service.create_sip_account(bed.account_id, "alice01")
    await bed.backend.flush()

    ha1 = ha1_md5("alice01", "callcontrol", password)
    text = bed.text()
    assert "[alice01](callcontrol-account)" in text
    assert "[alice01](callcontrol-account-auth)" in text
    assert "[alice01](callcontrol-account-aor)" in text
    assert f"password_digest=MD5:{ha1}\n" in text
    assert "realm=callcontrol\n" in text
    assert "from_domain=sip.example.net\n" in text
    assert row.password_digest == ha1 and row.domain == "sip.example.net"
    assert bed.ami.reloads == 1
    assert len(password) >= 20
    # The plain password is nowhere: file, database, logs.
    assert password not in text
    async with bed.sessions() as session:
        stored = (await session.execute(sa.select(SipAccount.__table__))).all()
    assert password not in repr(stored)
    assert password not in caplog.text


@pytest.mark.parametrize(
    ("login", "domain", "reason"),
    [
        ("alice01", None, "already taken"),
        ("bob01", "bad domain", "not a valid host"),
        ("bob01", "evil.example\n[x]", "not allowed"),
        ("Bob!", None, "not valid"),
        ("callcontrol-pstn", None, "reserved"),
        ("anonymous", None, "reserved"),
    ],
)
async def test_a_refused_account_changes_neither_the_database_nor_asterisk(
    bed: Bed, login: str, domain: str | None, reason: str
) -> None:
    await bed.service.create_sip_account(bed.account_id, "alice01")
    await bed.backend.flush()
    before = (bed.text(), os.stat(bed.path).st_ino, bed.ami.reloads)
    other = await _account(bed.sessions, "Other")

    with pytest.raises(InvalidInput, match=reason):
        await bed.service.create_sip_account(other, login, domain)
    await bed.backend.flush()

    assert (bed.text(), os.stat(bed.path).st_ino, bed.ami.reloads) == before
    async with bed.sessions() as session:
        logins = (await session.scalars(sa.select(SipAccount.login))).all()
    assert logins == ["alice01"]


async def test_a_login_in_use_is_login_taken_whoever_holds_it(bed: Bed) -> None:
    """LoginTaken (an InvalidInput) lets the API answer 409 instead of 422."""
    await bed.service.create_sip_account(bed.account_id, "alice01")
    other = await _account(bed.sessions, "Other")
    with pytest.raises(LoginTaken, match="already taken") as refused:
        await bed.service.create_sip_account(other, "alice01")
    assert refused.value.login == "alice01" and isinstance(refused.value, InvalidInput)


async def test_a_login_taken_by_a_concurrent_create_is_login_taken(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create that passed the pre-check but lost the race on the unique index: LoginTaken."""
    await bed.service.create_sip_account(bed.account_id, "race01")
    await bed.backend.flush()
    before = (bed.text(), bed.ami.reloads)

    async def lost_the_race(session: AsyncSession, login: str) -> None:
        pass  # the other create had not committed yet when this one looked

    monkeypatch.setattr(ProvisioningService, "_check_login_free", staticmethod(lost_the_race))
    other = await _account(bed.sessions, "Other")
    with pytest.raises(LoginTaken) as refused:
        await bed.service.create_sip_account(other, "race01")
    await bed.backend.flush()
    assert refused.value.__cause__ is not None  # the IntegrityError
    assert (bed.text(), bed.ami.reloads) == before


async def test_an_unknown_customer_account_is_refused(bed: Bed) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        await bed.service.create_sip_account(999_999, "carol01")
    await bed.backend.flush()
    assert not bed.path.exists() and bed.ami.reloads == 0


async def test_deleting_an_account_removes_its_sections(bed: Bed) -> None:
    await bed.service.create_sip_account(bed.account_id, "alice01")
    await bed.service.create_sip_account(bed.account_id, "bob001")
    await bed.backend.flush()
    await bed.service.delete_sip_account("alice01")
    await bed.backend.flush()

    text = bed.text()
    assert "[alice01]" not in text and "alice01" not in text
    assert "[bob001](callcontrol-account)" in text
    assert bed.ami.reloads == 2
    with pytest.raises(SipAccountNotFound, match="no SIP account"):
        await bed.service.delete_sip_account("alice01")


async def _number(sessions: Sessions, account_id: int, e164: str) -> int:
    async with sessions() as session, session.begin():
        number = Number(
            e164=e164, country_code=49, region="DE", city="Berlin", kind=NumberKind.VOICE,
            state=NumberState.ACTIVE, account_id=account_id, monthly_fee_minor=500,
            setup_fee_minor=100, currency="EUR",
        )  # fmt: skip
        session.add(number)
        await session.flush()
        return number.id


async def _ring(sessions: Sessions, number_id: int, *targets: tuple[DestinationType, str]) -> None:
    async with sessions() as session, session.begin():
        for position, (kind, target) in enumerate(targets, start=1):
            session.add(
                ForwardingDestination(
                    number_id=number_id, position=position, type=kind, target=target,
                    ring_timeout_s=20,
                )
            )  # fmt: skip


async def test_deleting_an_account_removes_the_forwarding_destinations_that_rang_it(
    bed: Bed,
) -> None:
    """Only the owner's destinations of type sip_account naming the login go, with the login."""
    await bed.service.create_sip_account(bed.account_id, "alice01")
    await bed.service.create_sip_account(bed.account_id, "bob001")
    own = await _number(bed.sessions, bed.account_id, "+493077700001")
    other_account = await _account(bed.sessions, "Other")
    foreign = await _number(bed.sessions, other_account, "+493077700002")
    await _ring(
        bed.sessions, own, (DestinationType.SIP_ACCOUNT, "alice01"),
        (DestinationType.SIP_ACCOUNT, "bob001"),
    )  # fmt: skip
    await _ring(
        bed.sessions, foreign, (DestinationType.SIP_URI, "sip:alice01@sip.example.net"),
        (DestinationType.SIP_ACCOUNT, "alice01"),  # not the owner's number: left alone
    )  # fmt: skip

    await bed.service.delete_sip_account("alice01")

    async with bed.sessions() as session:
        left = (
            await session.execute(
                sa.select(
                    ForwardingDestination.number_id,
                    ForwardingDestination.type,
                    ForwardingDestination.target,
                ).order_by(ForwardingDestination.id)
            )
        ).all()
    assert [tuple(r) for r in left] == [
        (own, DestinationType.SIP_ACCOUNT, "bob001"),
        (foreign, DestinationType.SIP_URI, "sip:alice01@sip.example.net"),
        (foreign, DestinationType.SIP_ACCOUNT, "alice01"),
    ]


async def test_a_refused_delete_leaves_the_forwarding_destinations(bed: Bed) -> None:
    own = await _number(bed.sessions, bed.account_id, "+493077700003")
    await _ring(bed.sessions, own, (DestinationType.SIP_ACCOUNT, "ghost01"))
    with pytest.raises(SipAccountNotFound):
        await bed.service.delete_sip_account("ghost01")
    async with bed.sessions() as session:
        count = await session.scalar(sa.select(sa.func.count()).select_from(ForwardingDestination))
    assert count == 1


async def test_reset_password_replaces_the_digest(bed: Bed) -> None:
    _, old = await bed.service.create_sip_account(bed.account_id, "alice01")
    await bed.backend.flush()
    _, new = await bed.service.reset_password("alice01")
    await bed.backend.flush()
    text = bed.text()
    assert ha1_md5("alice01", "callcontrol", new) in text
    assert ha1_md5("alice01", "callcontrol", old) not in text
    assert old != new and bed.ami.reloads == 2


async def test_sync_rebuilds_from_the_database_and_is_idempotent(bed: Bed) -> None:
    async with bed.sessions() as session, session.begin():
        for login in ("dave01", "erin01"):
            session.add(
                SipAccount(
                    account_id=bed.account_id,
                    login=login,
                    domain="sip.example.net",
                    password_digest=ha1_md5(login, "callcontrol", "x" * 24),
                )
            )

    first = await bed.service.sync()
    # Sections on templates are named by their template: endpoint, -auth, -aor.
    assert sorted(str(s) for s in first.changes.added) == [
        "callcontrol-account dave01", "callcontrol-account erin01",
        "callcontrol-account-aor dave01", "callcontrol-account-aor erin01",
        "callcontrol-account-auth dave01", "callcontrol-account-auth erin01",
    ]  # fmt: skip
    assert first.reload == "done" and bed.ami.reloads == 1
    inode = os.stat(bed.path).st_ino

    second = await bed.service.sync()
    assert second.changes.is_empty and second.reload == "not-needed"
    assert bed.ami.reloads == 1 and os.stat(bed.path).st_ino == inode

    bed.path.write_text(bed.text().replace("erin01", "mallory"))  # edited by hand
    third = await bed.service.sync()
    assert {s.name for s in third.changes.removed} == {"mallory"}
    assert {s.name for s in third.changes.added} == {"erin01"}
    assert third.reload == "done" and bed.ami.reloads == 2


async def test_a_burst_of_1000_changes_reloads_at_most_twice(
    db_session: Sessions, tmp_path: Path
) -> None:
    # The default quiet period (0.5 s): changes closer than that are one reload.
    async with _bed(db_session, tmp_path, reload_coalesce_s=0.5) as bed:
        for i in range(1000):
            await bed.service.create_sip_account(bed.account_id, f"user{i:04d}")
        await bed.backend.flush()

        assert bed.ami.reloads <= 2
        assert bed.text().count("(callcontrol-account)\n") == 1000
        assert (await bed.service.sync()).changes.is_empty


async def test_a_failed_reload_is_reported_then_retried(bed: Bed) -> None:
    bed.ami.fail_reloads = 1
    async with bed.sessions() as session, session.begin():
        session.add(
            SipAccount(
                account_id=bed.account_id,
                login="alice01",
                domain="sip.example.net",
                password_digest=ha1_md5("alice01", "callcontrol", "z" * 24),
            )
        )
    report = await bed.service.sync()
    assert report.reload == "failed"
    assert report.reload_error is not None and "unknown error" in report.reload_error
    assert "RELOAD FAILED" in report.summary()
    for _ in range(200):
        if bed.ami.reloads:
            break
        await asyncio.sleep(0.02)
    assert bed.ami.failed_reloads == 1 and bed.ami.reloads == 1
    assert bed.backend.last_reload_error is None
    assert (await bed.service.sync()).reload == "not-needed"


async def test_a_reload_that_failed_before_the_process_ended_is_done_by_the_next_one(
    db_session: Sessions, tmp_path: Path
) -> None:
    """The include file was written, its reload failed and the process ended before
    the retry: the file is already right, yet Asterisk has not read it. The next
    process reloads on its first apply (once), then no more for unchanged files."""
    async with _bed(db_session, tmp_path) as first:
        first.ami.fail_reloads = 10**6  # every reload of this process fails
        await first.service.create_sip_account(first.account_id, "alice01")
        report = await first.service.sync()
        assert report.reload == "failed" and first.ami.reloads == 0
        written = first.text()
    async with _bed(db_session, tmp_path) as second:
        again = await second.service.sync()
        assert again.changes.is_empty and second.text() == written
        assert again.reload == "done" and second.ami.reloads == 1
        assert (await second.service.sync()).reload == "not-needed"
        assert second.ami.reloads == 1


async def test_while_reloads_fail_every_change_is_still_on_disk_when_flush_returns(
    bed: Bed,
) -> None:
    """flush() returns early while the reload fails (the retries go on), but never
    before the changes made so far are written: a CLI run exits after it."""
    bed.ami.fail_reloads = 10**6
    await bed.service.create_sip_account(bed.account_id, "alice01")
    await bed.backend.flush()
    assert "[alice01](callcontrol-account)" in bed.text()
    await bed.service.delete_sip_account("alice01")
    await bed.backend.flush()
    assert "alice01" not in bed.text()
    assert bed.backend.last_reload_error is not None and bed.ami.reloads == 0


async def test_sync_reports_an_unreachable_ami(db_session: Sessions, tmp_path: Path) -> None:
    async with FakeAmi() as ami:
        dead_port = ami.port
    settings = _settings(tmp_path)
    client = AmiClient(ami.settings().model_copy(update={"port": dead_port}), timeout_s=1.0)
    backend = FileBackend.from_settings(settings, source=_never, reloader=client)
    service = ProvisioningService(db_session, backend, settings)
    try:
        await _account(db_session)
        report = await service.sync()
    finally:
        await backend.close()
    assert report.reload == "failed"
    assert report.reload_error is not None and "unreachable" in report.reload_error
    assert "RELOAD FAILED" in report.summary()


async def _never() -> DesiredState:
    raise AssertionError("the coalesced task was not expected to run")


def test_the_include_file_is_replaced_atomically(tmp_path: Path) -> None:
    """A reader sees the old or the new file, never a part; no temporary file is left."""
    path = tmp_path / "pjsip_callcontrol.conf"
    versions = ["A" * 300_000 + "\n", "B" * 200_000 + "\n"]
    atomic_write(path, versions[0])
    assert path.stat().st_mode & 0o777 == 0o640  # it holds digests
    seen: set[str] = set()
    bad: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text()
            seen.add(text[0])
            if text not in versions:
                bad.append(len(text))

    thread = threading.Thread(target=reader)
    thread.start()
    inodes = set()
    try:
        for i in range(200):
            atomic_write(path, versions[i % 2])
            inodes.add(path.stat().st_ino)
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert len(inodes) > 1  # replaced, not rewritten in place
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.stat().st_mode & 0o777 == 0o640
