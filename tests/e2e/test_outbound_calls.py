"""Outbound calls from a customer's SIP account through real Asterisk and the engine.

A SIPp phone (127.0.0.11) authenticates with the provisioned account's
generated password and dials; the SIPp PSTN carrier (127.0.0.5:5060) answers
and FAILS the call unless the From user is the one expected (the rented number
on calls to its own country, ``anonymous`` otherwise). The test then checks the
carrier's INVITE headers (P-Asserted-Identity, Privacy), the CDR and the charge.
Each test runs with both executors (``call_path``: with FastAGI the phone dials
the bed's ``*99`` prefix, which sends its call to the FastAGI dialplan).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.call_paths import CallPath
from support.data import Seeder, next_did
from support.provisioning import new_sip_account
from support.sipp import SipMessage, Sipp, SippResult

from callcontrol.db.models import LedgerKind

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
PHONE, PSTN_CARRIER = "127.0.0.11", "127.0.0.5"
_ports = itertools.count(5110)
_logins = itertools.count(1)


def sip_account(
    asterisk: AsteriskSandbox, db_url: str, data: Seeder, *, balance_minor: int, service: bool
) -> tuple[int, str, str, str]:
    """An account renting a Berlin number presented by a new SIP account."""
    account = data.account(balance_minor=balance_minor)
    did = data.number(account, did=next_did("+4930777"), callerid_service=service)
    data.present(account, did)
    login = f"out{next(_logins):03d}x{account}"
    password = new_sip_account(asterisk, db_url, account, login)
    return account, did, login, password


def phone(
    workdir: Path, login: str, password: str, dialled: str, scenario: str, **sets: str
) -> Sipp:
    return Sipp(
        scenario,
        PHONE,
        next(_ports),
        workdir,
        remote=ASTERISK,
        service=dialled,
        keys={"login": login},
        variables=sets,
        duration_ms=1000,
        extra_args=("-au", login, "-ap", password),
        timeout_s=20,
    )


def call_through_carrier(
    path: CallPath, workdir: Path, login: str, password: str, dialled: str, expected_from: str
) -> tuple[SippResult, SippResult]:
    carrier = Sipp(
        "far_answer_check_from.xml",
        PSTN_CARRIER,
        5060,
        workdir,
        variables={"expected_from": expected_from},
        timeout_s=30,
    ).start()
    carrier.wait_ready()
    caller = phone(workdir, login, password, path.outbound(dialled), "phone_call.xml").run()
    return caller, carrier.wait(15)


def carrier_invite(result: SippResult) -> SipMessage:
    invites = result.received("INVITE")
    assert invites, result.describe()
    return invites[0]


def test_a_call_to_the_rented_numbers_country_presents_it_and_is_charged(
    asterisk: AsteriskSandbox, call_path: CallPath, db_url: str, data: Seeder, workdir: Path
) -> None:
    account, did, login, password = sip_account(
        asterisk, db_url, data, balance_minor=1000, service=True
    )
    data.rate("49", 6)  # 6 cents a minute
    caller, carrier = call_through_carrier(call_path, workdir, login, password, "0306660123", did)
    assert caller.ok, caller.describe()
    assert carrier.ok, carrier.describe()  # the From check passed
    invite = carrier_invite(carrier)
    assert invite.first_line.startswith("INVITE sip:+49306660123@"), invite.first_line
    assert did.lstrip("+") in (invite.header("P-Asserted-Identity") or ""), invite.text
    assert "id" not in (invite.header("Privacy") or "none"), invite.text

    cdr = data.wait_for_cdr("+49306660123", caller=login)
    assert cdr["direction"] == "outbound" and cdr["disposition"] == "answered"
    assert cdr["caller"] == login and cdr["account_id"] == account
    leg = cdr["legs"][0]
    assert leg["destination_type"] == "pstn" and leg["billed_seconds"] >= 1
    charges = [e for e in data.ledger_entries(account) if e[0] is LedgerKind.CALL_CHARGE]
    assert len(charges) == 1 and charges[0][1] < 0
    assert charges[0][2] == f"call:{cdr['id']}:1"


@pytest.mark.parametrize(
    ("prefix", "dialled", "e164"),
    [("44", "00442079460123", "+442079460123"), ("43", "00431588580", "+431588580")],
    ids=["to the UK", "to Austria, a neighbour with its own rate"],
)
def test_a_call_to_another_country_goes_out_anonymous(
    asterisk: AsteriskSandbox,
    call_path: CallPath,
    db_url: str,
    data: Seeder,
    workdir: Path,
    prefix: str,
    dialled: str,
    e164: str,
) -> None:
    """A German number is shown only on calls to Germany: with the CallerID service
    and a rate for the destination, a call to Austria still goes out anonymous."""
    _, did, login, password = sip_account(asterisk, db_url, data, balance_minor=1000, service=True)
    assert did.startswith("+49")
    data.rate(prefix, 9)
    caller, carrier = call_through_carrier(
        call_path, workdir, login, password, dialled, "anonymous"
    )
    assert caller.ok, caller.describe()
    assert carrier.ok, carrier.describe()
    invite = carrier_invite(carrier)
    assert "id" in (invite.header("Privacy") or ""), invite.text
    assert did.lstrip("+") not in invite.text and login not in invite.text
    cdr = data.wait_for_cdr(e164, caller=login)
    assert cdr["direction"] == "outbound" and cdr["disposition"] == "answered"


def test_without_the_callerid_service_even_a_same_country_call_is_anonymous(
    asterisk: AsteriskSandbox, call_path: CallPath, db_url: str, data: Seeder, workdir: Path
) -> None:
    _, did, login, password = sip_account(asterisk, db_url, data, balance_minor=1000, service=False)
    data.rate("49", 6)
    caller, carrier = call_through_carrier(
        call_path, workdir, login, password, "+49306660124", "anonymous"
    )
    assert caller.ok, caller.describe()
    assert carrier.ok, carrier.describe()
    invite = carrier_invite(carrier)
    assert "id" in (invite.header("Privacy") or ""), invite.text
    assert did.lstrip("+") not in invite.text


@pytest.mark.parametrize(
    ("balance", "dialled", "code", "reason", "number"),
    [
        (0, "+49306660125", 403, "no_credit", "+49306660125"),
        (1000, "12", 484, "invalid_number", "12"),
    ],
)
def test_an_outbound_call_that_may_not_go_out_is_refused_with_a_clear_code(
    asterisk: AsteriskSandbox,
    call_path: CallPath,
    db_url: str,
    data: Seeder,
    workdir: Path,
    balance: int,
    dialled: str,
    code: int,
    reason: str,
    number: str,
) -> None:
    account, _, login, password = sip_account(
        asterisk, db_url, data, balance_minor=balance, service=True
    )
    data.rate("49", 6)
    result = phone(
        workdir,
        login,
        password,
        call_path.outbound(dialled),
        "phone_call_expect_code.xml",
        expected=str(code),
    ).run()
    assert result.ok, result.describe()
    cdr = data.wait_for_cdr(number, caller=login)
    assert cdr["direction"] == "outbound" and cdr["caller"] == login
    assert cdr["account_id"] == account  # refused, but the account's call
    assert cdr["disposition"] == "rejected" and cdr["reject_reason"] == reason


def test_an_outbound_call_is_cut_when_the_balance_is_spent_and_charged_once(
    asterisk: AsteriskSandbox, call_path: CallPath, db_url: str, data: Seeder, workdir: Path
) -> None:
    account, _, login, password = sip_account(asterisk, db_url, data, balance_minor=3, service=True)
    data.rate("4989", 60)  # 60 cents a minute: 3 cents pay for 3 seconds
    carrier = Sipp(
        "far_answer.xml", PSTN_CARRIER, 5060, workdir, variables={"answer_ms": "100"}
    ).start()
    carrier.wait_ready()
    dialled = call_path.outbound("+498966601234")
    caller = phone(workdir, login, password, dialled, "phone_call_wait_bye.xml").run()
    assert caller.ok, caller.describe()  # the engine hung up: the phone got the BYE
    assert carrier.wait(15).ok
    cdr = data.wait_for_cdr("+498966601234", caller=login)
    assert 2500 <= cdr["talk_ms"] <= 5000, cdr["talk_ms"]
    charges = [e for e in data.ledger_entries(account) if e[0] is LedgerKind.CALL_CHARGE]
    assert len(charges) == 1 and charges[0][2] == f"call:{cdr['id']}:1"
    assert data.balance(account) == 3 + charges[0][1] <= 0
