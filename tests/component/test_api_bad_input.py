"""Bad input found by trying (issue 13, item 7): each is a clear JSON error, never a 500,
and no secret is echoed back."""

from __future__ import annotations

import asyncio

import pytest
from test_api_fixtures import Api, api_fixture  # noqa: F401


def _is_error(body: dict[str, object], code: str) -> bool:
    return body["error"] == code and isinstance(body["message"], str) and "details" in body


async def _raw_request(api: Api, head: bytes) -> tuple[int, bytes]:
    """Send a hand-made request (headers aiohttp's client would refuse to build)."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status_line, _, _ = data.partition(b"\r\n")
    return int(status_line.split()[1]), data


async def test_a_bearer_token_that_is_not_ascii_is_a_401(api: Api) -> None:
    status, data = await _raw_request(
        api,
        b"GET /api/v1/pool HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xd1\x82\xd0\xbe\xd0\xba\xff\r\n\r\n",
    )
    assert status == 401, data
    assert b'"unauthorized"' in data


async def test_an_authorization_header_over_8_kb_is_a_json_error_without_the_secret(
    api: Api,
) -> None:
    secret = b"cc_" + b"S3cret" * 2000
    status, data = await _raw_request(
        api,
        b"GET /api/v1/pool HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + secret + b"\r\n\r\n",
    )
    assert status in (400, 401, 431), data
    assert b"S3cret" not in data
    body = data.partition(b"\r\n\r\n")[2]
    assert b'"error"' in body and b'"message"' in body and b'"details"' in body, data


@pytest.mark.parametrize(
    "path", ["calls", "calls.csv", "statistics", "transactions", "transactions.csv"]
)
async def test_a_day_at_the_end_of_the_calendar_is_a_422_not_a_500(api: Api, path: str) -> None:
    customer = await api.customer()
    for query in ("until=9999-12-31", "since=9999-12-31&until=9999-12-31"):
        response = await api.client.get(
            f"/api/v1/accounts/{customer.account_id}/{path}?{query}", headers=customer.headers
        )
        assert response.status == 422, (path, query, await response.text())
        assert _is_error(await response.json(), "invalid_input")


@pytest.mark.parametrize("currency", ["XYZ", "ABC", "XXX", "XAU"])
async def test_a_currency_must_be_iso_4217(api: Api, currency: str) -> None:
    response = await api.client.post(
        "/api/v1/accounts", json={"name": "Acme", "currency": currency}, headers=api.operator
    )
    assert response.status == 422
    assert "ISO 4217" in str(await response.json())


async def test_an_iso_4217_currency_is_accepted(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/accounts", json={"name": "Acme", "currency": "CHF"}, headers=api.operator
    )
    assert response.status == 201


async def test_duplicate_json_keys_are_refused(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/accounts",
        data=b'{"name": "Acme", "name": "Evil", "currency": "EUR"}',
        headers={**api.operator, "Content-Type": "application/json"},
    )
    assert response.status == 422, await response.text()
    body = await response.json()
    assert "duplicate" in body["message"] and "name" in str(body["details"])


async def test_a_top_up_idempotency_key_belongs_to_its_account(api: Api) -> None:
    first, second = await api.customer(balance_minor=0), await api.customer(balance_minor=0)
    for customer in (first, second):
        response = await api.client.post(
            f"/api/v1/accounts/{customer.account_id}/top-ups",
            json={"amount_minor": 700, "idempotency_key": "invoice-1"},
            headers=api.operator,
        )
        assert response.status == 201, await response.text()
        body = await response.json()
        assert body["already_posted"] is False and body["balance_minor"] == 700
    again = await api.client.post(
        f"/api/v1/accounts/{first.account_id}/top-ups",
        json={"amount_minor": 700, "idempotency_key": "invoice-1"},
        headers=api.operator,
    )
    assert (await again.json())["already_posted"] is True
