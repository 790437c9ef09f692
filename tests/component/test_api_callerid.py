"""CallerID settings through the HTTP API: the operator's CallerID service on a
number, the account's default presented number and a SIP account's override.

What the API writes is read back through the call path's own lookup
(``SqlSipAccountDirectory.facts``), so these tests show what an outbound call
would present, not only what the answers say.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from test_api_fixtures import Api, Customer, api_fixture  # noqa: F401

from callcontrol.db.models import Account, Number, SipAccount
from callcontrol.domain.vocabulary import NumberKind, NumberState
from callcontrol.repositories.sip_accounts import SqlSipAccountDirectory

S = NumberState


async def _sip_account(api: Api, owner: Customer, login: str) -> int:
    created = await api.client.post(
        f"/api/v1/accounts/{owner.account_id}/sip-accounts", json={"login": login},
        headers=owner.headers,
    )  # fmt: skip
    assert created.status == 201, await created.text()
    return int((await created.json())["id"])


async def _service(api: Api, did: str, enabled: bool) -> Any:
    return await api.client.put(
        f"/api/v1/numbers/{did}/callerid-service", json={"enabled": enabled}, headers=api.operator
    )


async def _choose_default(api: Api, headers: dict[str, str], account_id: int, did: Any) -> Any:
    return await api.client.put(
        f"/api/v1/accounts/{account_id}/presented-number", json={"did": did}, headers=headers
    )


async def _choose_for_sip(api: Api, headers: dict[str, str], sip_id: int, did: Any) -> Any:
    return await api.client.put(
        f"/api/v1/sip-accounts/{sip_id}/presented-number", json={"did": did}, headers=headers
    )


async def _presents(api: Api, login: str) -> tuple[str | None, bool]:
    """What an outbound call from ``login`` would present, as the engine reads it."""
    facts = await SqlSipAccountDirectory(sessions=api.sessions).facts(login)
    assert facts is not None
    return facts.presented_number, facts.callerid_service


async def _stored(api: Api, account_id: int) -> tuple[int | None, list[int | None]]:
    async with api.sessions() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        overrides = await session.scalars(
            sa.select(SipAccount.presented_number_id).where(SipAccount.account_id == account_id)
        )
        return account.callerid_number_id, list(overrides)


# --- the CallerID service (operator) ---------------------------------------------------------


async def test_the_operator_turns_the_callerid_service_on_and_off_and_the_customer_sees_it(
    api: Api,
) -> None:
    owner = await api.customer()
    did = await api.number(owner.account_id)
    on = await _service(api, did, True)
    seen_on = await (await api.client.get(f"/api/v1/numbers/{did}", headers=owner.headers)).json()
    off = await _service(api, did, False)
    listed = await api.client.get(
        f"/api/v1/accounts/{owner.account_id}/numbers", headers=owner.headers
    )
    assert on.status == 200 and (await on.json())["callerid_service"] is True
    assert seen_on["callerid_service"] is True
    assert off.status == 200 and (await off.json())["callerid_service"] is False
    assert [n["callerid_service"] for n in (await listed.json())["items"]] == [False]


@pytest.mark.parametrize(
    ("state", "kind", "owned"),
    [
        (S.AVAILABLE, NumberKind.VOICE, False),
        (S.DISCONNECTED, NumberKind.VOICE, False),
        (S.RESERVED, NumberKind.VOICE, True),
        (S.TESTING, NumberKind.VOICE, True),
        (S.ACTIVE, NumberKind.SMS_ONCE, True),
    ],
)
async def test_the_callerid_service_is_refused_with_409_for_a_number_not_bought_for_calls(
    api: Api, state: NumberState, kind: NumberKind, owned: bool
) -> None:
    owner = await api.customer()
    did = await api.number(owner.account_id if owned else None, state=state, kind=kind)
    refused = await _service(api, did, True)
    turned_off = await _service(api, did, False)
    answer = await refused.json()
    assert refused.status == 409, answer
    assert answer["error"] == "callerid_service_refused" and did in answer["message"]
    assert (kind.value if kind is NumberKind.SMS_ONCE else state.value) in answer["message"]
    assert turned_off.status == 200  # turning it off is always allowed
    async with api.sessions() as session:
        assert await session.scalar(sa.select(Number.callerid_service)) is False


@pytest.mark.parametrize("state", [S.PENDING, S.ACTIVE, S.SUSPENDED])
async def test_the_callerid_service_may_be_turned_on_for_a_bought_number(
    api: Api, state: NumberState
) -> None:
    owner = await api.customer()
    did = await api.number(owner.account_id, state=state)
    response = await _service(api, did, True)
    assert response.status == 200 and (await response.json())["callerid_service"] is True


async def test_a_customer_gets_404_not_403_for_an_unknown_number_on_the_operator_route(
    api: Api,
) -> None:
    """403 would tell a customer the number exists somewhere; it only learns of its own."""
    customer = await api.customer()
    response = await api.client.put(
        "/api/v1/numbers/+4930555000111/callerid-service", json={"enabled": True},
        headers=customer.headers,
    )  # fmt: skip
    assert response.status == 404 and (await response.json())["error"] == "not_found"


# --- the presented number: the account's default and the SIP account's override -------------


async def test_a_customer_chooses_the_default_number_and_its_sip_accounts_present_it(
    api: Api,
) -> None:
    owner = await api.customer()
    did = await api.number(owner.account_id)
    await _sip_account(api, owner, "alice")
    before = await _presents(api, "alice")
    await _service(api, did, True)
    chosen = await _choose_default(api, owner.headers, owner.account_id, did)
    account = await api.client.get(f"/api/v1/accounts/{owner.account_id}", headers=owner.headers)
    assert before == (None, False)
    assert chosen.status == 200 and (await chosen.json())["presented_number"] == did
    assert (await account.json())["presented_number"] == did
    assert await _presents(api, "alice") == (did, True)


async def test_without_the_service_the_chosen_number_is_known_but_not_shown(api: Api) -> None:
    """Choosing a number does not buy the service: calls still go out anonymous."""
    owner = await api.customer()
    did = await api.number(owner.account_id)
    await _sip_account(api, owner, "alice")
    await _choose_default(api, owner.headers, owner.account_id, did)
    assert await _presents(api, "alice") == (did, False)


async def test_a_sip_accounts_own_number_wins_and_clearing_it_falls_back_to_the_default(
    api: Api,
) -> None:
    owner = await api.customer()
    default, own = await api.number(owner.account_id), await api.number(owner.account_id)
    alice = await _sip_account(api, owner, "alice")
    await _sip_account(api, owner, "bob")
    await _choose_default(api, owner.headers, owner.account_id, default)
    override = await _choose_for_sip(api, owner.headers, alice, own)
    listed = await api.client.get(
        f"/api/v1/accounts/{owner.account_id}/sip-accounts", headers=owner.headers
    )
    rekeyed = await api.client.post(f"/api/v1/sip-accounts/{alice}/password", headers=owner.headers)
    presented = (await _presents(api, "alice"), await _presents(api, "bob"))
    cleared = await _choose_for_sip(api, owner.headers, alice, None)
    after_clear = await _presents(api, "alice")
    await _choose_default(api, owner.headers, owner.account_id, None)
    assert override.status == 200 and (await override.json())["presented_number"] == own
    items = (await listed.json())["items"]
    assert [(i["login"], i["presented_number"]) for i in items] == [("alice", own), ("bob", None)]
    assert (await rekeyed.json())["presented_number"] == own
    assert presented == ((own, False), (default, False))
    assert (await cleared.json())["presented_number"] is None and after_clear == (default, False)
    assert await _presents(api, "alice") == (None, False)
    assert await _stored(api, owner.account_id) == (None, [None, None])


@pytest.mark.parametrize("level", ["account", "sip_account"])
async def test_another_accounts_number_is_refused_exactly_like_an_unknown_one(
    api: Api, level: str
) -> None:
    owner, other = await api.customer(), await api.customer()
    theirs = await api.number(other.account_id)
    unknown = "+4930555000999"
    sip_id = await _sip_account(api, owner, "alice")

    async def choose(did: str) -> Any:
        if level == "account":
            return await _choose_default(api, owner.headers, owner.account_id, did)
        return await _choose_for_sip(api, owner.headers, sip_id, did)

    foreign, missing = await choose(theirs), await choose(unknown)
    foreign_body, missing_body = await foreign.json(), await missing.json()
    assert (foreign.status, missing.status) == (422, 422), foreign_body
    assert foreign_body["details"][0]["field"] == "body.did"
    assert foreign_body["message"].replace(theirs, unknown) == missing_body["message"]
    assert (
        foreign_body["details"][0]["message"]
        == f"account {owner.account_id} has no number {theirs}"
    )
    assert await _stored(api, owner.account_id) == (None, [None])


@pytest.mark.parametrize(
    ("state", "kind", "why"),
    [
        (S.RESERVED, NumberKind.VOICE, "is reserved"),
        (S.PENDING, NumberKind.VOICE, "is pending"),
        (S.TESTING, NumberKind.VOICE, "is testing"),
        (S.ACTIVE, NumberKind.SMS_ONCE, "sms-once"),
    ],
)
async def test_a_number_of_the_account_that_cannot_be_presented_is_a_422_saying_why(
    api: Api, state: NumberState, kind: NumberKind, why: str
) -> None:
    owner = await api.customer()
    did = await api.number(owner.account_id, state=state, kind=kind)
    sip_id = await _sip_account(api, owner, "alice")
    answers = [
        await _choose_default(api, owner.headers, owner.account_id, did),
        await _choose_for_sip(api, owner.headers, sip_id, did),
    ]
    for answer in answers:
        body = await answer.json()
        assert answer.status == 422, body
        assert body["details"][0]["field"] == "body.did" and why in body["details"][0]["message"]
    assert await _stored(api, owner.account_id) == (None, [None])


async def test_a_suspended_number_stays_presentable(api: Api) -> None:
    """Suspension pauses a number (balance below zero) but it is still the customer's."""
    owner = await api.customer()
    did = await api.number(owner.account_id, state=S.SUSPENDED)
    response = await _choose_default(api, owner.headers, owner.account_id, did)
    assert response.status == 200 and (await response.json())["presented_number"] == did


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"did": "not a number"}, "body.did"),
        ({"did": 4930123456}, "body.did"),
        ({}, "body.did"),
        ({"did": None, "number_id": 5}, "body.number_id"),
    ],
)
async def test_a_malformed_choice_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    owner = await api.customer()
    response = await api.client.put(
        f"/api/v1/accounts/{owner.account_id}/presented-number", json=body, headers=owner.headers
    )
    answer = await response.json()
    assert response.status == 422, answer
    assert [d["field"] for d in answer["details"]] == [field]


async def test_the_operator_chooses_for_any_account_but_only_among_its_own_numbers(
    api: Api,
) -> None:
    owner, other = await api.customer(), await api.customer()
    mine, theirs = await api.number(owner.account_id), await api.number(other.account_id)
    sip_id = await _sip_account(api, owner, "alice")
    accepted = await _choose_for_sip(api, api.operator, sip_id, mine)
    refused = await _choose_for_sip(api, api.operator, sip_id, theirs)
    refused_default = await _choose_default(api, api.operator, owner.account_id, theirs)
    assert accepted.status == 200 and (await accepted.json())["presented_number"] == mine
    assert (refused.status, refused_default.status) == (422, 422)
    assert await _presents(api, "alice") == (mine, False)


async def test_a_number_the_account_gave_up_is_no_longer_shown_or_presented(api: Api) -> None:
    owner = await api.customer()
    did = await api.number(owner.account_id, activated_on=datetime.now(UTC).date())
    sip_id = await _sip_account(api, owner, "alice")
    await _service(api, did, True)
    await _choose_default(api, owner.headers, owner.account_id, did)
    await _choose_for_sip(api, owner.headers, sip_id, did)
    deleted = await api.client.delete(f"/api/v1/numbers/{did}", headers=api.operator)
    account = await api.client.get(f"/api/v1/accounts/{owner.account_id}", headers=owner.headers)
    sip = await api.client.get(f"/api/v1/sip-accounts/{sip_id}", headers=owner.headers)
    assert deleted.status == 200 and (await deleted.json())["state"] == "disconnected"
    assert (await account.json())["presented_number"] is None
    assert (await sip.json())["presented_number"] is None
    assert await _presents(api, "alice") == (None, False)


async def test_the_personal_data_export_names_the_presented_numbers(api: Api) -> None:
    owner = await api.customer()
    did = await api.number(owner.account_id)
    sip_id = await _sip_account(api, owner, "alice")
    await _choose_default(api, owner.headers, owner.account_id, did)
    await _choose_for_sip(api, owner.headers, sip_id, did)
    export = await (
        await api.client.get(
            f"/api/v1/accounts/{owner.account_id}/personal-data", headers=owner.headers
        )
    ).json()
    assert export["account"]["presented_number"] == did
    assert [s["presented_number"] for s in export["sip_accounts"]] == [did]
    assert [n["callerid_service"] for n in export["numbers"]] == [False]


async def test_the_spec_documents_the_callerid_operations_and_who_may_call_them(
    api: Api,
) -> None:
    spec = await (await api.client.get("/openapi.json")).json()
    service = spec["paths"]["/api/v1/numbers/{did}/callerid-service"]["put"]
    default = spec["paths"]["/api/v1/accounts/{account_id}/presented-number"]["put"]
    override = spec["paths"]["/api/v1/sip-accounts/{sip_account_id}/presented-number"]["put"]
    schemas = spec["components"]["schemas"]
    assert (
        service["description"] == "Operator only." and {"403", "409"} <= service["responses"].keys()
    )
    assert "403" not in default["responses"] and "403" not in override["responses"]
    assert {"200", "404", "422"} <= default["responses"].keys() & override["responses"].keys()
    assert schemas["PresentedNumber"]["required"] == ["did"]
    assert "callerid_service" in schemas["NumberOut"]["properties"]
    assert "presented_number" in schemas["AccountOut"]["properties"]
    assert "presented_number" in schemas["SipAccountOut"]["properties"]
