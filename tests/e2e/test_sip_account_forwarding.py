"""Inbound calls forwarded to the customer's own SIP account with us.

The account is provisioned (file or realtime back-end, as the run's database
decides), a SIPp phone on 127.0.0.12 registers with the generated password,
then answers on the address it registered: the engine (ARI) or the dialplan
(FastAGI; each test runs with both) dials ``PJSIP/<login>``, Asterisk finds
the registered contact. A phone that never
registered is unreachable, and sequential forwarding goes on to the next leg.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.call_paths import CallPath
from support.data import Seeder
from support.provisioning import new_sip_account
from support.sipp import Sipp, SippResult

from callcontrol.domain.vocabulary import DestinationType, ForwardingMode

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
FAR_A, PHONE = "127.0.0.3", "127.0.0.12"
CALLER_NUMBER = "4915112345678"
_ports = itertools.count(5130)
_logins = itertools.count(1)


def caller(path: CallPath, workdir: Path, did: str) -> SippResult:
    return Sipp(
        "caller_answered.xml",
        path.carrier,
        5070,
        workdir,
        remote=ASTERISK,
        service=did,
        keys={"caller": CALLER_NUMBER},
        duration_ms=1000,
        timeout_s=30,
    ).run()


def test_a_call_forwarded_to_the_customers_sip_account_rings_the_registered_phone(
    asterisk: AsteriskSandbox, call_path: CallPath, db_url: str, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    login = f"desk{next(_logins):03d}x{account}"
    password = new_sip_account(asterisk, db_url, account, login)
    port = next(_ports)
    registered = Sipp(
        "phone_register.xml",
        PHONE,
        port,
        workdir,
        remote=ASTERISK,
        service=login,
        extra_args=("-au", login, "-ap", password),
        timeout_s=10,
    ).run()
    assert registered.ok, registered.describe()
    did = data.number(account, destinations=[(DestinationType.SIP_ACCOUNT, login, 10)])
    phone = Sipp(
        "far_answer_check_from.xml",
        PHONE,
        port,
        workdir,
        variables={"expected_from": CALLER_NUMBER},
        timeout_s=30,
    ).start()
    phone.wait_ready()
    call = caller(call_path, workdir, did)
    assert call.ok, call.describe()
    rang = phone.wait(15)
    assert rang.ok, rang.describe()  # the caller's number was shown on the phone
    assert rang.received("INVITE")[0].first_line.startswith(f"INVITE sip:{login}@{PHONE}:{port}")
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered"
    assert cdr["answered_destination"] == f"1:sip_account:{login}"


def test_an_unregistered_sip_account_is_skipped_and_the_next_leg_answers(
    asterisk: AsteriskSandbox, call_path: CallPath, db_url: str, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    login = f"desk{next(_logins):03d}x{account}"
    new_sip_account(asterisk, db_url, account, login)  # provisioned, never registered
    did = data.number(
        account,
        mode=ForwardingMode.SEQUENTIAL,
        destinations=[
            (DestinationType.SIP_ACCOUNT, login, 10),
            (DestinationType.SIP_URI, f"sip:backup@{FAR_A}:5080", 10),
        ],
    )
    backup = Sipp(
        "far_answer.xml", FAR_A, 5080, workdir, variables={"answer_ms": "100"}, timeout_s=30
    ).start()
    backup.wait_ready()
    call = caller(call_path, workdir, did)
    assert call.ok, call.describe()
    assert backup.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered"
    first, second = cdr["legs"]
    assert first["outcome"] in ("failed", "unreachable"), first
    assert second["outcome"] == "answered"
    assert cdr["ring_ms"] < 5000, "an unreachable account costs no ring time"
