"""The operator's side through the API: inventory import (CSV/JSON, all or nothing, bad
rows named by line), search, edit, retire; activation (pending list, explicit day, first
fee, mail, refusal -> pool + refund); rates; refund, give-back, discount; next charge
date after what billing charged."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from test_api_fixtures import Api, Customer, api_fixture  # noqa: F401

from callcontrol.db.models import LedgerEntry, Number
from callcontrol.domain.vocabulary import LedgerKind, NumberState
from callcontrol.services.billing_run import run_billing
from callcontrol.settings import BillingSettings

HEADER = (
    "e164,country,city,kind,monthly_fee_minor,setup_fee_minor,currency,reservable,"
    "needs_documents,expected_activation"
)
GOOD_CSV = (
    HEADER + "\n"
    "+493012340001,DE,Berlin,voice,500,100,EUR,true,false,24h\n"
    "004930 1234 0002,DE,Berlin,voice,500,100,EUR,,,\n"
    "+4915790000001,DE,,sms-once,50,0,EUR,false,false,\n"
)


async def _post(api: Api, path: str, body: object, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    response = await api.client.post(path, json=body, headers=headers or api.operator)
    return response.status, await response.json() if response.status != 204 else None


async def test_a_csv_import_fills_the_pool_and_the_search_finds_it(api: Api) -> None:
    status, body = await _post(api, "/api/v1/inventory", {"csv": GOOD_CSV})
    assert (status, body) == (201, {"imported": 3})
    customer = await api.customer()
    pool = await (await api.client.get("/api/v1/pool?city=Berlin", headers=customer.headers)).json()
    assert [n["e164"] for n in pool["items"]] == ["+493012340001", "+493012340002"]
    found = await (
        await api.client.get(
            "/api/v1/inventory?did_prefix=%2B4915&kind=sms-once", headers=api.operator
        )
    ).json()
    assert [(n["e164"], n["reservable"], n["state"]) for n in found["items"]] == [
        ("+4915790000001", False, "available")
    ]
    first = await (
        await api.client.get("/api/v1/inventory?did_prefix=493012340001", headers=api.operator)
    ).json()
    assert first["items"][0]["expected_activation"] == "24h"


async def test_a_bad_file_changes_nothing_and_names_every_bad_line(api: Api) -> None:
    await _post(
        api, "/api/v1/inventory", {"csv": HEADER + "\n+493012349999,DE,,voice,1,1,EUR,,,\n"}
    )
    bad = (
        HEADER + "\n"
        "+493012340001,DE,Berlin,voice,500,100,EUR,,,\n"  # line 2: fine
        "+49301,DE,Berlin,voice,500,100,EUR,,,\n"  # 3: not a number
        "+493012340003,AT,Wien,voice,500,100,EUR,,,\n"  # 4: not an Austrian number
        "+493012340004,DE,Berlin,voice,-5,100,EUR,,,\n"  # 5: negative fee
        "+493012340005,DE,Berlin,fax,500,100,EUR,,,\n"  # 6: kind
        "+493012340006,DE,Berlin,voice,500,100,XYZ,,,\n"  # 7: currency
        "+493012340001,DE,Berlin,voice,500,100,EUR,,,\n"  # 8: repeats line 2
        "+493012349999,DE,Berlin,voice,500,100,EUR,,,\n"  # 9: already in the inventory
        "+493012340007,DE,Berlin,voice,500,100,EUR,maybe,,\n"  # 10: flag
    )
    status, body = await _post(api, "/api/v1/inventory", {"csv": bad})
    assert status == 422
    fields = [d["field"] for d in body["details"]]
    assert fields == [
        "line 3.e164",
        "line 4.country",
        "line 5.monthly_fee_minor",
        "line 6.kind",
        "line 7.currency",
        "line 8.e164",
        "line 9.e164",
        "line 10.reservable",
    ]
    async with api.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Number)) == 1


async def test_json_rows_are_imported_with_the_same_rules(api: Api) -> None:
    row = {"e164": "+493012340011", "country": "DE", "kind": "voice", "monthly_fee_minor": 500,
           "setup_fee_minor": 0, "currency": "EUR", "needs_documents": True}  # fmt: skip
    status, body = await _post(api, "/api/v1/inventory", {"numbers": [row, {**row, "kind": "x"}]})
    assert status == 422 and [d["field"] for d in body["details"]] == ["line 2.kind"]
    status, body = await _post(api, "/api/v1/inventory", {"numbers": [row]})
    assert (status, body) == (201, {"imported": 1})


async def test_the_operator_edits_prices_and_retires_only_an_available_number(api: Api) -> None:
    await _post(api, "/api/v1/inventory", {"csv": GOOD_CSV})
    edited = await api.client.patch(
        "/api/v1/inventory/+493012340001",
        json={"monthly_fee_minor": 700, "reservable": False, "expected_activation": None},
        headers=api.operator,
    )
    body = await edited.json()
    assert edited.status == 200
    assert (body["monthly_fee_minor"], body["reservable"], body["expected_activation"]) == (
        700,
        False,
        None,
    )
    customer = await api.customer()
    held = await api.number(customer.account_id)
    refused = await api.client.delete(f"/api/v1/inventory/{held}", headers=api.operator)
    assert refused.status == 409
    retired = await api.client.delete("/api/v1/inventory/+493012340002", headers=api.operator)
    assert retired.status == 204
    gone = await api.client.get("/api/v1/numbers/+493012340002", headers=api.operator)
    assert gone.status == 404
    not_for_customers = await api.client.patch(
        "/api/v1/inventory/+493012340001", json={"monthly_fee_minor": 1}, headers=customer.headers
    )
    assert not_for_customers.status in (403, 404)


async def _bought(api: Api, customer: Customer, did: str) -> None:
    status, body = await _post(
        api, f"/api/v1/accounts/{customer.account_id}/purchases", {"did": did}, customer.headers
    )
    assert status == 201 and body["state"] == "pending", body


async def test_activation_on_a_given_day_charges_the_first_month_and_mails_the_customer(
    api: Api,
) -> None:
    await _post(api, "/api/v1/inventory", {"csv": GOOD_CSV})
    customer = await api.customer(balance_minor=10_000)
    await _bought(api, customer, "+493012340001")
    pending = await (await api.client.get("/api/v1/activations", headers=api.operator)).json()
    assert [(n["e164"], n["account_id"]) for n in pending["items"]] == [
        ("+493012340001", customer.account_id)
    ]
    day = (datetime.now(UTC) - timedelta(days=3)).date()
    status, body = await _post(
        api, "/api/v1/numbers/+493012340001/activation", {"activated_on": day.isoformat()}
    )
    assert status == 200, body
    assert body["state"] == "active" and body["activated_on"] == day.isoformat()
    account = await (
        await api.client.get(f"/api/v1/accounts/{customer.account_id}", headers=api.operator)
    ).json()
    assert account["balance_minor"] == 10_000 - 100 - 500
    assert any("+493012340001" in str(m["Subject"]) + m.get_content() for m in api.mailer.sent)
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    await _bought(api, customer, "+493012340002")
    status, _ = await _post(
        api, "/api/v1/numbers/+493012340002/activation", {"activated_on": future}
    )
    assert status == 422


async def test_refusing_an_activation_returns_the_number_and_refunds_the_setup_fee(
    api: Api,
) -> None:
    await _post(api, "/api/v1/inventory", {"csv": GOOD_CSV})
    customer = await api.customer(balance_minor=10_000)
    await _bought(api, customer, "+493012340001")
    status, body = await _post(
        api, "/api/v1/numbers/+493012340001/activation-refusal", {"reason": "carrier: no stock"}
    )
    assert status == 200 and (body["state"], body["account_id"]) == ("available", None)
    account = await (
        await api.client.get(f"/api/v1/accounts/{customer.account_id}", headers=api.operator)
    ).json()
    assert account["balance_minor"] == 10_000
    status, _ = await _post(
        api, "/api/v1/numbers/+493012340001/activation-refusal", {"reason": "again"}
    )
    assert status == 409


async def test_a_documents_number_is_activated_only_after_acceptance(api: Api) -> None:
    row = {"e164": "+493012340021", "country": "DE", "kind": "voice", "monthly_fee_minor": 500,
           "setup_fee_minor": 0, "currency": "EUR", "needs_documents": True}  # fmt: skip
    await _post(api, "/api/v1/inventory", {"numbers": [row]})
    customer = await api.customer()
    await _bought(api, customer, "+493012340021")
    status, _ = await _post(api, "/api/v1/numbers/+493012340021/activation", {})
    assert status == 409
    status, _ = await _post(api, "/api/v1/numbers/+493012340021/documents-acceptance", None)
    assert status == 200
    status, body = await _post(api, "/api/v1/numbers/+493012340021/activation", {})
    assert status == 200 and body["state"] == "active"


async def test_rates_longest_prefix_wins_and_customers_read_the_price_list(api: Api) -> None:
    sheet = (
        "prefix,rate_per_minute_minor,currency,description\n"
        "49,5,EUR,Germany\n+4915,12,EUR,German mobiles\n43,7,EUR,Austria\n"
    )
    status, body = await _post(api, "/api/v1/rates/imports", {"csv": sheet})
    assert (status, body) == (201, {"added": 3, "updated": 0})
    customer = await api.customer()
    listed = await (await api.client.get("/api/v1/rates", headers=customer.headers)).json()
    assert [(r["prefix"], r["rate_per_minute_minor"]) for r in listed["items"]] == [
        ("43", 7),
        ("49", 5),
        ("4915", 12),
    ]
    one = await (
        await api.client.get("/api/v1/rates?number=%2B4915112345678", headers=customer.headers)
    ).json()
    assert [r["prefix"] for r in one["items"]] == ["4915"]
    again = sheet.replace("49,5,", "49,6,") + "43,8,EUR,dup\n"
    status, body = await _post(api, "/api/v1/rates/imports", {"csv": again})
    assert status == 422 and [d["field"] for d in body["details"]] == ["line 5.prefix"]
    status, body = await _post(
        api, "/api/v1/rates/imports", {"csv": sheet.replace("49,5,", "49,6,")}
    )
    assert (status, body) == (201, {"added": 0, "updated": 3})
    rate_id = one["items"][0]["id"]
    edited = await api.client.patch(
        f"/api/v1/rates/{rate_id}", json={"rate_per_minute_minor": 9}, headers=api.operator
    )
    assert (await edited.json())["rate_per_minute_minor"] == 9
    dup = await _post(
        api, "/api/v1/rates", {"prefix": "43", "rate_per_minute_minor": 1, "currency": "EUR"}
    )
    assert dup[0] == 409
    by_customer = await api.client.delete(f"/api/v1/rates/{rate_id}", headers=customer.headers)
    assert by_customer.status == 403
    deleted = await api.client.delete(f"/api/v1/rates/{rate_id}", headers=api.operator)
    assert deleted.status == 204
    after = await (
        await api.client.get("/api/v1/rates?number=%2B4915112345678", headers=customer.headers)
    ).json()
    assert [r["prefix"] for r in after["items"]] == ["49"]


async def test_refund_within_two_working_days_and_give_back_to_the_former_owner(api: Api) -> None:
    await _post(api, "/api/v1/inventory", {"csv": GOOD_CSV})
    customer = await api.customer(balance_minor=10_000)
    base = f"/api/v1/accounts/{customer.account_id}"
    await _bought(api, customer, "+493012340001")
    await _post(api, "/api/v1/numbers/+493012340001/activation", {})
    status, body = await _post(api, "/api/v1/numbers/+493012340001/refund", None)
    assert status == 200 and body["state"] == "disconnected", body
    account = await (await api.client.get(base, headers=api.operator)).json()
    assert account["balance_minor"] == 10_000
    stranger = await api.customer()
    status, _ = await _post(
        api,
        f"/api/v1/accounts/{stranger.account_id}/give-backs",
        {"did": "+493012340001"},
        stranger.headers,
    )
    assert status == 404
    status, body = await _post(
        api, f"{base}/give-backs", {"did": "+493012340001"}, customer.headers
    )
    assert status == 201 and body["state"] == "active" and body["account_id"] == customer.account_id
    account = await (await api.client.get(base, headers=api.operator)).json()
    assert account["balance_minor"] == 10_000 - 100 - 500  # setup fee again, and the month


async def test_the_volume_discount_is_set_by_the_operator_only(api: Api) -> None:
    customer = await api.customer()
    url = f"/api/v1/accounts/{customer.account_id}/discount"
    mine = await api.client.put(url, json={"volume_discount_pct": 50}, headers=customer.headers)
    assert mine.status == 403
    done = await api.client.put(url, json={"volume_discount_pct": 15}, headers=api.operator)
    assert (done.status, await done.json()) == (
        200,
        {"account_id": customer.account_id, "volume_discount_pct": 15},
    )


async def test_the_next_charge_date_follows_what_billing_charged(api: Api) -> None:
    """After three charges it showed the first: it was computed from the real date."""
    customer = await api.customer(balance_minor=100_000)
    activated = date(2026, 1, 20)
    did = await api.number(customer.account_id, activated_on=activated)
    async with api.sessions() as session, session.begin():
        number_id = await session.scalar(sa.select(Number.id).where(Number.e164 == did))
    for day in (date(2026, 1, 20), date(2026, 2, 20), date(2026, 3, 20)):
        await run_billing(api.sessions, today=day, settings=BillingSettings(), mailer=api.mailer)
    async with api.sessions() as session:
        periods = sorted(await session.scalars(
            sa.select(LedgerEntry.period_start).where(
                LedgerEntry.number_id == number_id, LedgerEntry.kind == LedgerKind.MONTHLY_FEE
            )
        ))  # fmt: skip
    assert periods[-1] == date(2026, 3, 20)
    shown = await (await api.client.get(f"/api/v1/numbers/{did}", headers=customer.headers)).json()
    assert shown["next_charge_date"] == "2026-04-20"
    assert NumberState.ACTIVE.value == shown["state"]


async def test_buying_five_numbers_at_once_credits_the_negotiated_discount(api: Api) -> None:
    customer = await api.customer(balance_minor=10_000)
    base = f"/api/v1/accounts/{customer.account_id}"
    await api.client.put(f"{base}/discount", json={"volume_discount_pct": 20}, headers=api.operator)
    dids = [await api.number(None, state=NumberState.AVAILABLE) for _ in range(5)]
    status, body = await _post(api, f"{base}/bulk-purchases", {"dids": dids}, customer.headers)
    assert status == 201 and [n["state"] for n in body["items"]] == ["pending"] * 5, body
    account = await (await api.client.get(base, headers=api.operator)).json()
    assert account["balance_minor"] == 10_000 - 5 * 100 + 100  # 20 % of 500 of setup fees back
    few = [await api.number(None, state=NumberState.AVAILABLE) for _ in range(2)]
    status, _ = await _post(api, f"{base}/bulk-purchases", {"dids": few}, customer.headers)
    account = await (await api.client.get(base, headers=api.operator)).json()
    assert status == 201 and account["balance_minor"] == 9_600 - 200  # no discount below 5


async def test_a_bulk_purchase_the_balance_does_not_cover_buys_nothing(api: Api) -> None:
    customer = await api.customer(balance_minor=1_000)  # 5 x (100 + 500) = 3,000 needed
    dids = [await api.number(None, state=NumberState.AVAILABLE) for _ in range(5)]
    status, body = await _post(
        api, f"/api/v1/accounts/{customer.account_id}/bulk-purchases", {"dids": dids},
        customer.headers,
    )  # fmt: skip
    assert status == 409 and body["error"] == "insufficient_funds"
    pool = await (await api.client.get("/api/v1/pool?limit=1000", headers=customer.headers)).json()
    assert set(dids) <= {n["e164"] for n in pool["items"]}
