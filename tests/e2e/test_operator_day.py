"""The operator's day end to end, through the engine's own HTTP API only (no SQL):
numbers imported -> a customer buys one -> the operator activates it -> the
activation mail arrives -> a call to it is forwarded and answered; a rate
imported -> a PSTN-forwarded call is charged at it; a forwarding target on the
provider's own Asterisk is refused (the lab allows loopback, not our services)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.data import Seeder
from support.engine import EngineProcess
from support.sipp import Sipp
from support.smtp import SmtpSink
from test_greeting_upload import ApiClient

from callcontrol.domain.vocabulary import LedgerKind

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
CARRIER, FAR_A, PSTN_CARRIER = "127.0.0.2", "127.0.0.3", "127.0.0.5"
CALLER_NUMBER = "4915112345678"
HEADER = (
    "e164,country,city,kind,monthly_fee_minor,setup_fee_minor,currency,reservable,"
    "needs_documents,expected_activation"
)


def operator_token(engine: EngineProcess) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "token", "create", "--operator",
         "--label", "e2e operator"],
        env=engine.env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def send(api: ApiClient, method: str, path: str, body: object = None) -> tuple[int, Any]:
    raw = None if body is None else json.dumps(body).encode()
    return api.request(method, path, body=raw, content_type="application/json" if raw else "")


def open_customer(operator: ApiClient, email: str, top_up: int) -> tuple[int, ApiClient]:
    status, account = send(operator, "POST", "/api/v1/accounts", {"name": "Acme", "email": email})
    assert status == 201, account
    status, _ = send(operator, "POST", f"/api/v1/accounts/{account['id']}/top-ups",
                     {"amount_minor": top_up, "idempotency_key": "inv-1"})  # fmt: skip
    assert status == 201
    status, made = send(operator, "POST", f"/api/v1/accounts/{account['id']}/tokens")
    assert status == 201, made
    return account["id"], ApiClient(operator.base_url, made["token"])


def test_imported_number_bought_activated_mailed_and_forwarded(
    engine: EngineProcess, smtp: SmtpSink, data: Seeder, workdir: Path
) -> None:
    operator = ApiClient(engine.base_url, operator_token(engine))
    did = "+493077712301"
    sheet = f"{HEADER}\n{did},DE,Berlin,voice,500,100,EUR,true,false,24h\n"
    status, body = send(operator, "POST", "/api/v1/inventory", {"csv": sheet})
    assert (status, body) == (201, {"imported": 1}), body
    account_id, customer = open_customer(operator, "buyer@example.invalid", 10_000)
    status, bought = send(
        customer, "POST", f"/api/v1/accounts/{account_id}/purchases", {"did": did}
    )
    assert status == 201 and bought["state"] == "pending", bought
    status, _ = send(customer, "PUT", f"/api/v1/numbers/{did}/forwarding", {
        "destinations": [{"type": "sip_uri", "target": f"sip:alice@{FAR_A}:5080", "timeout_s": 10}]
    })  # fmt: skip
    assert status == 200
    status, pending = send(operator, "GET", "/api/v1/activations")
    assert [n["e164"] for n in pending["items"]] == [did]
    status, active = send(operator, "POST", f"/api/v1/numbers/{did}/activation", {})
    assert status == 200 and active["state"] == "active", active
    mail = smtp.wait_for("buyer@example.invalid")
    assert did in str(mail["Subject"]) + str(mail.get_body())

    far = Sipp("far_answer.xml", FAR_A, 5080, workdir, variables={"answer_ms": "100"}).start()
    far.wait_ready()
    caller = Sipp(
        "caller_answered.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, duration_ms=1500,
    ).run()  # fmt: skip
    assert caller.ok, caller.describe()
    assert far.wait(15).ok
    cdr = data.wait_for_cdr(did)
    assert cdr["disposition"] == "answered"
    assert cdr["answered_destination"] == f"1:sip_uri:sip:alice@{FAR_A}:5080"


def test_an_imported_rate_prices_a_pstn_forwarded_call(
    engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    operator = ApiClient(engine.base_url, operator_token(engine))
    sheet = (
        "prefix,rate_per_minute_minor,currency,description\n"
        "33623,12,EUR,France mobile (e2e)\n3362,1,EUR,France mobile block (e2e)\n"
    )
    status, done = send(operator, "POST", "/api/v1/rates/imports", {"csv": sheet})
    assert status == 201, done
    account_id, customer = open_customer(operator, "pstn@example.invalid", 5_000)
    did = data.number(account_id)
    status, body = send(customer, "PUT", f"/api/v1/numbers/{did}/forwarding", {
        "destinations": [{"type": "pstn", "target": "+33623456789", "timeout_s": 10}]
    })  # fmt: skip
    assert status == 200, body
    status, price = send(customer, "GET", "/api/v1/rates?number=%2B33623456789")
    assert [r["rate_per_minute_minor"] for r in price["items"]] == [12]
    carrier = Sipp(
        "far_answer.xml", PSTN_CARRIER, 5060, workdir, variables={"answer_ms": "100"}
    ).start()
    carrier.wait_ready()
    caller = Sipp(
        "caller_answered.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, duration_ms=2000,
    ).run()  # fmt: skip
    assert caller.ok, caller.describe()
    assert carrier.wait(15).ok
    cdr = data.wait_for_cdr(did)
    leg = cdr["legs"][0]
    assert leg["destination_type"] == "pstn" and leg["billed_seconds"] > 0
    charges = [e for e in data.ledger_entries(account_id) if e[0] is LedgerKind.CALL_CHARGE]
    assert [c[1] for c in charges] == [-math.ceil(12 * leg["billed_seconds"] / 60)]


def test_a_forwarding_target_on_the_providers_own_asterisk_is_refused(
    engine: EngineProcess, data: Seeder
) -> None:
    operator = ApiClient(engine.base_url, operator_token(engine))
    account_id, customer = open_customer(operator, "own@example.invalid", 1_000)
    did = data.number(account_id)
    for target, rule in (("127.0.0.1:5060", "own service"), ("127.0.0.1:8088", "own service"),
                         ("169.254.169.254", "link-local")):  # fmt: skip
        status, body = send(customer, "PUT", f"/api/v1/numbers/{did}/forwarding", {
            "destinations": [{"type": "ip", "target": target}]
        })  # fmt: skip
        assert status == 422, (target, body)
        assert f"rule: {rule}" in body["details"][0]["message"], body
    status, body = send(customer, "PUT", f"/api/v1/numbers/{did}/forwarding", {
        "destinations": [{"type": "ip", "target": f"{FAR_A}:5080"}]
    })  # fmt: skip
    assert status == 200, body  # the lab's far end on loopback is allowed by settings
