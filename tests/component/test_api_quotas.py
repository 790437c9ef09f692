"""Per-account quotas (``settings.quotas``): a customer at its quota gets a 409 naming it;
the operator is not held to them. 30 greetings of 9.4 MB each were accepted before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_api_fixtures import Api, open_api, wav

from callcontrol.domain.vocabulary import NumberState
from callcontrol.settings import QuotaSettings

QUOTAS = QuotaSettings(greeting_bytes=5_000, greetings=2, sip_accounts=1, numbers=1)


@pytest.fixture(name="api")
async def small_quotas(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(fresh_db_url, tmp_path, quotas=QUOTAS) as api:
        yield api


async def _upload(api: Api, account_id: int, headers: dict[str, str], frames: int) -> int:
    response = await api.client.post(
        f"/api/v1/accounts/{account_id}/media?kind=greeting",
        data=wav(frames=frames), headers={**headers, "Content-Type": "audio/wav"},
    )  # fmt: skip
    return response.status


async def test_greetings_are_limited_in_number_and_in_bytes(api: Api) -> None:
    customer = await api.customer()
    assert await _upload(api, customer.account_id, customer.headers, 100) == 201
    # 2 x 3,000 frames = 6,000 bytes of audio: over the 5,000-byte quota
    assert await _upload(api, customer.account_id, customer.headers, 3_000) == 409
    assert await _upload(api, customer.account_id, customer.headers, 100) == 201
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/media?kind=greeting",
        data=wav(frames=100), headers={**customer.headers, "Content-Type": "audio/wav"},
    )  # fmt: skip
    assert response.status == 409
    body = await response.json()
    assert body["error"] == "quota_exceeded" and "quota 2" in body["message"]
    assert await _upload(api, customer.account_id, api.operator, 100) == 201  # the operator may


async def test_sip_accounts_are_limited(api: Api) -> None:
    customer = await api.customer()
    url = f"/api/v1/accounts/{customer.account_id}/sip-accounts"
    first = await api.client.post(url, json={}, headers=customer.headers)
    assert first.status == 201
    second = await api.client.post(url, json={}, headers=customer.headers)
    assert second.status == 409 and (await second.json())["error"] == "quota_exceeded"


async def test_numbers_held_are_limited(api: Api) -> None:
    customer = await api.customer()
    await api.number(customer.account_id)
    did = await api.number(None, state=NumberState.AVAILABLE)
    for path, body in (("purchases", {"did": did}), ("reservations", {"did": did})):
        response = await api.client.post(
            f"/api/v1/accounts/{customer.account_id}/{path}", json=body, headers=customer.headers
        )
        assert response.status == 409, path
        assert (await response.json())["error"] == "quota_exceeded"
