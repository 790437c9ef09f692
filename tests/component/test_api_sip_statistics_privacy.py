"""SIP accounts (password shown once, stored as HA1, provisioned), statistics and CSV, privacy."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from test_api_fixtures import REALM, Api, api_fixture  # noqa: F401

from callcontrol.db.models import Account, Cdr, LedgerEntry, SipAccount, VoicemailMessage
from callcontrol.domain.vocabulary import Disposition, NumberState
from callcontrol.repositories.personal_data import purge_expired
from provisioning.digest import ha1_md5


async def test_a_sip_account_password_is_shown_once_and_stored_as_ha1(api: Api) -> None:
    customer = await api.customer()
    created = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/sip-accounts",
        json={"login": "office1"},
        headers=customer.headers,
    )
    body = await created.json()
    listed = await (
        await api.client.get(
            f"/api/v1/accounts/{customer.account_id}/sip-accounts", headers=customer.headers
        )
    ).json()
    async with api.sessions() as session:
        digest = await session.scalar(sa.select(SipAccount.password_digest))
    assert created.status == 201 and body["domain"] == "sip.example.net"
    assert digest == ha1_md5("office1", REALM, body["password"])
    assert "password" not in listed["items"][0]


async def test_the_api_provisions_a_sip_account_into_asterisks_include_file(api: Api) -> None:
    """Created through the API: its sections appear with the HA1 only; deleted: they go."""
    customer = await api.customer()
    created = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/sip-accounts",
        json={"login": "office2"},
        headers=customer.headers,
    )
    body = await created.json()
    written = await api.pjsip_conf()
    deleted = await api.client.delete(
        f"/api/v1/sip-accounts/{body['id']}", headers=customer.headers
    )
    after = await api.pjsip_conf()

    assert created.status == 201 and deleted.status == 204
    assert "[office2](callcontrol-account-auth)" in written
    assert f"password_digest=MD5:{ha1_md5('office2', REALM, body['password'])}\n" in written
    assert f"realm={REALM}\n" in written and "from_domain=sip.example.net\n" in written
    assert body["password"] not in written
    assert "office2" not in after


async def test_a_login_the_provisioning_rules_reserve_is_a_422(api: Api) -> None:
    customer = await api.customer()
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/sip-accounts",
        json={"login": "callcontrol-pstn"},
        headers=customer.headers,
    )
    body = await response.json()
    async with api.sessions() as session:
        count = await session.scalar(sa.select(sa.func.count()).select_from(SipAccount))
    assert response.status == 422 and "reserved" in body["message"] and count == 0


async def test_resetting_a_password_replaces_the_digest(api: Api) -> None:
    customer = await api.customer()
    created = await (
        await api.client.post(
            f"/api/v1/accounts/{customer.account_id}/sip-accounts",
            json={},
            headers=customer.headers,
        )
    ).json()
    reset = await (
        await api.client.post(
            f"/api/v1/sip-accounts/{created['id']}/password", headers=customer.headers
        )
    ).json()
    async with api.sessions() as session:
        digest = await session.scalar(sa.select(SipAccount.password_digest))
    assert reset["password"] != created["password"]
    assert digest == ha1_md5(created["login"], REALM, reset["password"])


async def test_a_taken_login_is_a_409_and_deleting_frees_it(api: Api) -> None:
    customer = await api.customer()
    url = f"/api/v1/accounts/{customer.account_id}/sip-accounts"
    first = await (
        await api.client.post(url, json={"login": "desk"}, headers=customer.headers)
    ).json()
    taken = await api.client.post(url, json={"login": "desk"}, headers=customer.headers)
    deleted = await api.client.delete(
        f"/api/v1/sip-accounts/{first['id']}", headers=customer.headers
    )
    again = await api.client.post(url, json={"login": "desk"}, headers=customer.headers)
    message = (await taken.json())["message"]
    assert (taken.status, deleted.status, again.status) == (409, 204, 201)
    assert message == "the SIP login 'desk' is taken; choose another"


async def test_another_accounts_login_is_taken_too(api: Api) -> None:
    """Logins are global (they name pjsip sections), so another customer's is a 409."""
    first, second = await api.customer(), await api.customer()
    made = await api.client.post(
        f"/api/v1/accounts/{first.account_id}/sip-accounts",
        json={"login": "shared"},
        headers=first.headers,
    )
    taken = await api.client.post(
        f"/api/v1/accounts/{second.account_id}/sip-accounts",
        json={"login": "shared"},
        headers=second.headers,
    )
    assert (made.status, taken.status) == (201, 409)


async def _calls(api: Api) -> tuple[int, str, dict[str, str]]:
    customer = await api.customer()
    did = await api.number(customer.account_id)
    day = datetime(2025, 3, 10, 12, tzinfo=UTC)
    await api.cdr(customer.account_id, did, started_at=day, talk_ms=61_000, cost_minor=12)
    await api.cdr(customer.account_id, did, started_at=day + timedelta(hours=1), talk_ms=5_000)
    await api.cdr(customer.account_id, did, started_at=day, disposition=Disposition.NO_ANSWER)
    await api.cdr(customer.account_id, did, started_at=day + timedelta(days=5), talk_ms=5_000)
    return customer.account_id, did, customer.headers


async def test_per_number_totals_count_calls_answered_minutes_and_cost_in_the_period(
    api: Api,
) -> None:
    account_id, did, headers = await _calls(api)
    response = await api.client.get(
        f"/api/v1/accounts/{account_id}/statistics?since=2025-03-10&until=2025-03-10",
        headers=headers,
    )
    totals = (await response.json())["items"]
    assert totals == [
        {"did": did, "calls": 3, "answered": 2, "minutes": 3, "talk_seconds": 66, "cost_minor": 12}
    ]


async def test_the_call_list_is_filtered_by_period_and_exported_as_csv(api: Api) -> None:
    account_id, did, headers = await _calls(api)
    query = "since=2025-03-15&until=2025-03-15"
    listed = await (
        await api.client.get(f"/api/v1/accounts/{account_id}/calls?{query}", headers=headers)
    ).json()
    exported = await api.client.get(f"/api/v1/accounts/{account_id}/calls.csv", headers=headers)
    rows = list(csv.DictReader(io.StringIO(await exported.text())))
    assert [c["talk_seconds"] for c in listed["items"]] == [5]
    assert exported.content_type == "text/csv" and len(rows) == 4
    assert rows[0]["did"] == did and rows[0]["caller"] == "+4915112345678"


async def test_a_period_that_ends_before_it_starts_is_a_422(api: Api) -> None:
    account_id, _, headers = await _calls(api)
    response = await api.client.get(
        f"/api/v1/accounts/{account_id}/calls?since=2025-03-15&until=2025-03-01", headers=headers
    )
    assert response.status == 422


async def test_transactions_are_exported_as_csv(api: Api) -> None:
    customer = await api.customer(balance_minor=777)
    response = await api.client.get(
        f"/api/v1/accounts/{customer.account_id}/transactions.csv", headers=customer.headers
    )
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(r["kind"], r["amount_minor"]) for r in rows] == [("top_up", "777")]


async def test_the_personal_data_export_holds_the_account_its_calls_and_voicemail(api: Api) -> None:
    account_id, did, headers = await _calls(api)
    await api.voicemail(account_id)
    data = await (
        await api.client.get(f"/api/v1/accounts/{account_id}/personal-data", headers=headers)
    ).json()
    assert data["account"]["email"] == "a@example.com"
    assert [n["e164"] for n in data["numbers"]] == [did]
    assert len(data["calls"]) == 4 and len(data["voicemail"]) == 1


async def test_erasure_clears_identity_recordings_and_callers_but_keeps_the_ledger(
    api: Api,
) -> None:
    account_id, _, headers = await _calls(api)
    _, recording = await api.voicemail(account_id)
    customer_erasure = await api.client.post(
        f"/api/v1/accounts/{account_id}/erasure", headers=headers
    )
    response = await api.client.post(f"/api/v1/accounts/{account_id}/erasure", headers=api.operator)
    result = await response.json()
    async with api.sessions() as session:
        account = await session.get(Account, account_id)
        callers = set(await session.scalars(sa.select(Cdr.caller)))
        entries = await session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry))
    assert customer_erasure.status == 403 and response.status == 200
    assert (result["recordings_deleted"], result["calls_anonymised"]) == (1, 4)
    assert account is not None and account.email is None and account.erased_at is not None
    assert callers == {None} and entries == 1 and not recording.exists()


async def test_purge_expired_removes_only_what_is_older_than_the_retention(api: Api) -> None:
    customer = await api.customer()
    did = await api.number(customer.account_id)
    now = datetime(2025, 6, 1, tzinfo=UTC)
    await api.cdr(
        customer.account_id, did, started_at=now - timedelta(days=200), caller="+4915100000009"
    )
    await api.cdr(
        customer.account_id, did, started_at=now - timedelta(days=10), caller="+4915100000008"
    )
    _, old = await api.voicemail(customer.account_id, created_at=now - timedelta(days=200))
    _, new = await api.voicemail(customer.account_id, created_at=now - timedelta(days=10))
    result = await purge_expired(api.sessions, now, 180, media_root=api.media_root)
    async with api.sessions() as session:
        callers = set(await session.scalars(sa.select(Cdr.caller)))
        messages = await session.scalar(sa.select(sa.func.count()).select_from(VoicemailMessage))
    assert (result.calls_anonymised, result.recordings_deleted) == (1, 1)
    assert callers == {None, "+4915100000008"} and messages == 1
    assert not old.exists() and new.exists()


async def test_erasure_closes_the_account_tokens_sip_accounts_numbers_and_later_patches(
    api: Api,
) -> None:
    customer = await api.customer(balance_minor=10_000)
    base = f"/api/v1/accounts/{customer.account_id}"
    sip = await api.client.post(
        f"{base}/sip-accounts", json={"login": "erased1"}, headers=customer.headers
    )
    assert sip.status == 201
    active = await api.number(customer.account_id)
    reservable = await api.number(None, state=NumberState.AVAILABLE)
    to_buy = await api.number(None, state=NumberState.AVAILABLE)
    reserved = await api.client.post(
        f"{base}/reservations", json={"did": reservable}, headers=customer.headers
    )
    bought = await api.client.post(
        f"{base}/purchases", json={"did": to_buy}, headers=customer.headers
    )
    assert (reserved.status, bought.status) == (201, 201)
    assert "erased1" in await api.pjsip_conf()

    response = await api.client.post(f"{base}/erasure", headers=api.operator)
    assert response.status == 200, await response.text()

    assert (await api.client.get(base, headers=customer.headers)).status == 401
    assert "erased1" not in await api.pjsip_conf()
    states = {}
    for did in (active, reservable, to_buy):
        got = await api.client.get(f"/api/v1/numbers/{did}", headers=api.operator)
        states[did] = ((await got.json())["state"], (await got.json())["account_id"])
    assert states == {
        active: ("disconnected", None),
        reservable: ("available", None),
        to_buy: ("available", None),
    }
    account = await (await api.client.get(base, headers=api.operator)).json()
    assert account["balance_minor"] == 10_000  # the pending order's setup fee came back
    patch = await api.client.patch(base, json={"email": "back@example.com"}, headers=api.operator)
    assert patch.status == 409
    token = await api.client.post(f"{base}/tokens", headers=api.operator)
    assert token.status == 409


async def test_talk_seconds_follow_one_rounding_rule_in_the_list_the_csv_and_the_totals(
    api: Api,
) -> None:
    """A 2.008 s call was 3 s in the call list and 2 s in the statistics."""
    customer = await api.customer()
    did = await api.number(customer.account_id)
    day = datetime(2025, 3, 10, 12, tzinfo=UTC)
    await api.cdr(customer.account_id, did, started_at=day, talk_ms=2_008)
    await api.cdr(customer.account_id, did, started_at=day, talk_ms=1_001)
    base, headers = f"/api/v1/accounts/{customer.account_id}", customer.headers
    listed = await (await api.client.get(f"{base}/calls", headers=headers)).json()
    totals = await (await api.client.get(f"{base}/statistics", headers=headers)).json()
    exported = await (await api.client.get(f"{base}/calls.csv", headers=headers)).text()
    per_call = sorted(c["talk_seconds"] for c in listed["items"])
    assert per_call == [2, 3]
    assert sorted(int(r["talk_seconds"]) for r in csv.DictReader(io.StringIO(exported))) == [2, 3]
    assert totals["items"][0]["talk_seconds"] == sum(per_call) == 5
