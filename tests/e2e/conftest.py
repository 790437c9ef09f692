"""The real thing: Asterisk 22 (sandbox), the engine as a process, SIPp, SMTP.

Session-wide: one Asterisk, one SMTP sink, one engine on the run's database
(SQLite or PostgreSQL, chosen by ``CALLCONTROL_TEST_DB``; on PostgreSQL,
Asterisk also reads SIP accounts from it: the realtime provisioning back-end). Each test creates
its own account and DID, so tests do not see each other's data. After every
test no channel may be left in Asterisk: a stuck channel fails the test.

Call-flow tests take ``call_path`` and run once per executor: the ARI engine
(session-wide) and the FastAGI engine (one per module that uses it, with an
ARI app name of its own so it never takes the ARI engine's calls).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox, asterisk_sandbox, default_config, realtime_url_for
from support.call_paths import (
    AGI_PORT,
    ARI_CARRIER,
    CallPath,
    agi_report_folder,
    clear_agi_reports,
)
from support.data import Seeder
from support.engine import EngineProcess, engine_env, free_port
from support.smtp import SmtpSink

from provisioning.asterisk_config import (
    BENCH_AGI_APP_SUFFIX,
    BENCH_AGI_CARRIER_IP,
    BENCH_AGI_OUTBOUND_PREFIX,
)


@pytest.fixture(scope="session")
def asterisk(db_url: str) -> Iterator[AsteriskSandbox]:
    """On PostgreSQL, SIP accounts are provisioned as realtime rows Asterisk reads
    from the run's database; on SQLite, into pjsip_callcontrol.conf (file back-end).
    So the same SIP-account and outbound tests prove both back-ends."""
    with asterisk_sandbox(default_config(realtime_url=realtime_url_for(db_url))) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def engine(
    asterisk: AsteriskSandbox,
    db_url: str,
    smtp: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EngineProcess]:
    logs = tmp_path_factory.mktemp("engine")
    env = engine_env(asterisk, db_url, spool=logs / "spool.db", smtp_port=smtp.port)
    process = EngineProcess(env=env, log_path=logs / "engine.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def agi_engine(
    asterisk: AsteriskSandbox,
    db_url: str,
    smtp: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EngineProcess]:
    """An engine with ``calls.executor=agi`` answering the bed's FastAGI dialplan,
    under an ARI app of its own (it never takes the ARI engine's calls)."""
    logs = tmp_path_factory.mktemp("agi-engine")
    clear_agi_reports(asterisk.layout.root)
    env = engine_env(asterisk, db_url, spool=logs / "spool.db", smtp_port=smtp.port)
    env |= {
        "CALLCONTROL_ARI__APP": asterisk.app + BENCH_AGI_APP_SUFFIX,
        "CALLCONTROL_CALLS__EXECUTOR": "agi",
        "CALLCONTROL_AGI__HOST": "127.0.0.1",
        "CALLCONTROL_AGI__PORT": str(AGI_PORT),
        "CALLCONTROL_AGI__CDR_FOLDER": str(agi_report_folder(asterisk.layout.root)),
    }
    process = EngineProcess(env=env, log_path=logs / "engine.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture(params=["ari", "agi"])
def call_path(request: pytest.FixtureRequest) -> CallPath:
    """The executor that carries this test's calls (each call-flow test runs with both)."""
    if request.param == "ari":
        return CallPath("ari", request.getfixturevalue("engine"), ARI_CARRIER)
    return CallPath(
        "agi",
        request.getfixturevalue("agi_engine"),
        BENCH_AGI_CARRIER_IP,
        BENCH_AGI_OUTBOUND_PREFIX,
    )


@pytest.fixture
def data(db_url: str) -> Seeder:
    return Seeder(db_url)


@pytest.fixture(autouse=True)
def no_channel_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "asterisk" not in request.fixturenames:
        return
    sandbox: AsteriskSandbox = request.getfixturevalue("asterisk")
    deadline = time.monotonic() + 8
    listing = ""
    while time.monotonic() < deadline:
        listing = sandbox.cli("core show channels concise")
        if not listing.strip():
            return
        time.sleep(0.2)
    sandbox.hangup_all()
    pytest.fail(f"channels left in Asterisk after the test:\n{listing}")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
