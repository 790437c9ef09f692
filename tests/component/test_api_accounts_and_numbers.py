"""Accounts, balance and the number life cycle through the HTTP API."""

from __future__ import annotations

from datetime import UTC, date, datetime

from test_api_fixtures import Api, api_fixture  # noqa: F401

from callcontrol.domain.vocabulary import NumberKind, NumberState


async def test_the_operator_opens_an_account_and_its_token_works(api: Api) -> None:
    created = await api.client.post(
        "/api/v1/accounts", json={"name": "Acme", "email": "ops@acme.example"}, headers=api.operator
    )
    account = await created.json()
    token = await (
        await api.client.post(f"/api/v1/accounts/{account['id']}/tokens", headers=api.operator)
    ).json()
    mine = await api.client.get(
        f"/api/v1/accounts/{account['id']}", headers={"Authorization": f"Bearer {token['token']}"}
    )
    assert created.status == 201 and account["balance_minor"] == 0
    assert (await mine.json())["email"] == "ops@acme.example"


async def test_a_top_up_moves_the_balance_through_the_ledger_once_per_key(api: Api) -> None:
    customer = await api.customer(balance_minor=0)
    url = f"/api/v1/accounts/{customer.account_id}/top-ups"
    body = {"amount_minor": 2500, "idempotency_key": "bank-42"}
    first = await (await api.client.post(url, json=body, headers=api.operator)).json()
    again = await (await api.client.post(url, json=body, headers=api.operator)).json()
    ledger = await api.client.get(
        f"/api/v1/accounts/{customer.account_id}/transactions", headers=customer.headers
    )
    items = (await ledger.json())["items"]
    assert (first["balance_minor"], first["already_posted"]) == (2500, False)
    assert (again["balance_minor"], again["already_posted"]) == (2500, True)
    assert [(i["kind"], i["amount_minor"]) for i in items] == [("top_up", 2500)]


async def test_a_top_up_key_reused_for_another_amount_is_refused_with_409(api: Api) -> None:
    customer = await api.customer(balance_minor=0)
    url = f"/api/v1/accounts/{customer.account_id}/top-ups"
    await api.client.post(
        url, json={"amount_minor": 100, "idempotency_key": "k"}, headers=api.operator
    )
    clash = await api.client.post(
        url, json={"amount_minor": 200, "idempotency_key": "k"}, headers=api.operator
    )
    assert clash.status == 409, await clash.text()
    assert (await clash.json())["error"]
    spec = await (await api.client.get("/openapi.json")).json()
    declared = spec["paths"]["/api/v1/accounts/{account_id}/top-ups"]["post"]["responses"]
    assert "409" in declared, "the 409 is part of the contract"


async def test_a_top_up_reactivates_a_suspended_number(api: Api) -> None:
    customer = await api.customer(balance_minor=-100)
    did = await api.number(
        customer.account_id, state=NumberState.SUSPENDED, activated_on=date(2024, 1, 5)
    )
    await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/top-ups",
        json={"amount_minor": 1000},
        headers=api.operator,
    )
    number = await (await api.client.get(f"/api/v1/numbers/{did}", headers=customer.headers)).json()
    assert number["state"] == "active"


async def test_a_customer_corrects_its_own_email(api: Api) -> None:
    customer = await api.customer()
    response = await api.client.patch(
        f"/api/v1/accounts/{customer.account_id}",
        json={"email": "new@example.org"},
        headers=customer.headers,
    )
    assert response.status == 200 and (await response.json())["email"] == "new@example.org"


async def test_the_pool_is_searched_by_country_city_and_kind(api: Api) -> None:
    berlin = await api.number(None, state=NumberState.AVAILABLE, city="Berlin")
    await api.number(None, state=NumberState.AVAILABLE, city="Hamburg")
    await api.number(None, state=NumberState.AVAILABLE, city="Berlin", kind=NumberKind.SMS_ONCE)
    await api.number(None, state=NumberState.ACTIVE, city="Berlin")
    customer = await api.customer()
    response = await api.client.get(
        "/api/v1/pool?country_code=49&city=Berlin&kind=voice", headers=customer.headers
    )
    assert [n["e164"] for n in (await response.json())["items"]] == [berlin]


async def test_a_customer_reserves_then_buys_a_chosen_number(api: Api) -> None:
    did = await api.number(None, state=NumberState.AVAILABLE)
    customer = await api.customer(balance_minor=10_000)
    base = f"/api/v1/accounts/{customer.account_id}"
    reserved = await api.client.post(
        f"{base}/reservations", json={"did": did}, headers=customer.headers
    )
    bought = await api.client.post(f"{base}/purchases", json={"did": did}, headers=customer.headers)
    account = await (await api.client.get(base, headers=customer.headers)).json()
    assert (reserved.status, (await reserved.json())["state"]) == (201, "reserved")
    assert (bought.status, (await bought.json())["state"]) == (201, "pending")
    assert account["balance_minor"] == 10_000 - 100  # the setup fee


async def test_automatic_purchase_picks_a_number_of_the_region_and_city(api: Api) -> None:
    await api.number(None, state=NumberState.AVAILABLE, city="Hamburg")
    wanted = await api.number(None, state=NumberState.AVAILABLE, city="Berlin")
    customer = await api.customer()
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/purchases",
        json={"region": "DE", "city": "Berlin"}, headers=customer.headers,
    )  # fmt: skip
    assert response.status == 201 and (await response.json())["e164"] == wanted


async def test_buying_without_enough_balance_is_a_409_and_charges_nothing(api: Api) -> None:
    did = await api.number(None, state=NumberState.AVAILABLE)
    customer = await api.customer(balance_minor=50)
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/purchases",
        json={"did": did},
        headers=customer.headers,
    )
    account = await (
        await api.client.get(f"/api/v1/accounts/{customer.account_id}", headers=customer.headers)
    ).json()
    assert response.status == 409 and (await response.json())["error"] == "insufficient_funds"
    assert account["balance_minor"] == 50


async def test_a_purchase_naming_both_did_and_region_is_refused(api: Api) -> None:
    customer = await api.customer()
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/purchases",
        json={"did": "+4930123456", "region": "DE"}, headers=customer.headers,
    )  # fmt: skip
    assert response.status == 422


async def test_a_one_hour_test_lends_an_available_voice_number(api: Api) -> None:
    did = await api.number(None, state=NumberState.AVAILABLE)
    customer = await api.customer()
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/tests",
        json={"did": did, "destination": {"type": "pstn", "target": "+49 151 1234 5678"}},
        headers=customer.headers,
    )  # fmt: skip
    number = await response.json()
    expires = datetime.fromisoformat(number["test_expires_at"])
    assert response.status == 201 and number["state"] == "testing"
    assert 3500 < (expires - datetime.now(UTC)).total_seconds() <= 3600


async def test_a_test_with_an_invalid_destination_names_the_field(api: Api) -> None:
    did = await api.number(None, state=NumberState.AVAILABLE)
    customer = await api.customer()
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/tests",
        json={"did": did, "destination": {"type": "pstn", "target": "12"}},
        headers=customer.headers,
    )
    assert response.status == 422
    assert (await response.json())["details"][0]["field"] == "body.destination.target"


async def test_an_active_number_shows_its_next_charge_date(api: Api) -> None:
    customer = await api.customer()
    did = await api.number(customer.account_id, activated_on=date(2024, 1, 31))
    number = await (await api.client.get(f"/api/v1/numbers/{did}", headers=customer.headers)).json()
    next_charge = date.fromisoformat(number["next_charge_date"])
    assert next_charge > datetime.now(UTC).date()
    assert next_charge.day in (28, 29, 30, 31)


async def test_deleting_a_number_disconnects_it(api: Api) -> None:
    customer = await api.customer()
    did = await api.number(customer.account_id, activated_on=datetime.now(UTC).date())
    response = await api.client.delete(f"/api/v1/numbers/{did}", headers=customer.headers)
    assert response.status == 200 and (await response.json())["state"] == "disconnected"


async def test_a_number_another_customer_holds_is_not_in_the_pool(api: Api) -> None:
    owner = await api.customer()
    did = await api.number(owner.account_id)
    other = await api.customer()
    response = await api.client.post(
        f"/api/v1/accounts/{other.account_id}/reservations",
        json={"did": did},
        headers=other.headers,
    )
    assert response.status == 404
