"""Tokens: listed without secrets, revoked by id (operator: any; customer: its own),
optional expiry; a revoked or expired token is a 401 on its very next request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from test_api_fixtures import Api, api_fixture  # noqa: F401

from callcontrol.cli import main
from callcontrol.db.models import ApiToken
from callcontrol.web.api.tokens import create_token


def _secret(headers: dict[str, str]) -> str:
    return headers["Authorization"].split()[1]


async def _list(api: Api, headers: dict[str, str], query: str = "") -> list[dict[str, object]]:
    response = await api.client.get(f"/api/v1/tokens{query}", headers=headers)
    assert response.status == 200, await response.text()
    text = await response.text()
    assert "cc_" not in text and "hash" not in text  # no secret, no digest
    items: list[dict[str, object]] = (await response.json())["items"]
    return items


async def test_the_operator_lists_every_token_and_a_customer_only_its_own(api: Api) -> None:
    first, second = await api.customer(), await api.customer()
    everything = await _list(api, api.operator)
    assert {t["account_id"] for t in everything} == {None, first.account_id, second.account_id}
    mine = await _list(api, first.headers)
    assert [t["account_id"] for t in mine] == [first.account_id]
    sneaky = await _list(api, first.headers, f"?account_id={second.account_id}")
    assert [t["account_id"] for t in sneaky] == [first.account_id]  # the filter is ignored
    one = await _list(api, api.operator, f"?account_id={second.account_id}")
    assert [t["account_id"] for t in one] == [second.account_id]


async def test_a_revoked_token_is_refused_at_once(api: Api) -> None:
    customer = await api.customer()
    (token,) = await _list(api, customer.headers)
    assert (await api.client.get("/api/v1/pool", headers=customer.headers)).status == 200
    response = await api.client.delete(f"/api/v1/tokens/{token['id']}", headers=customer.headers)
    assert response.status == 204
    assert (await api.client.get("/api/v1/pool", headers=customer.headers)).status == 401
    (listed,) = await _list(api, api.operator, f"?account_id={customer.account_id}")
    assert listed["revoked_at"] is not None


async def test_a_customer_cannot_see_or_revoke_another_accounts_token(api: Api) -> None:
    first, second = await api.customer(), await api.customer()
    (theirs,) = await _list(api, second.headers)
    operator_token = next(t for t in await _list(api, api.operator) if t["role"] == "operator")
    for token_id in (theirs["id"], operator_token["id"], 999_999):
        response = await api.client.delete(f"/api/v1/tokens/{token_id}", headers=first.headers)
        assert response.status == 404
    assert (await api.client.get("/api/v1/pool", headers=second.headers)).status == 200
    by_operator = await api.client.delete(f"/api/v1/tokens/{theirs['id']}", headers=api.operator)
    assert by_operator.status == 204
    assert (await api.client.get("/api/v1/pool", headers=second.headers)).status == 401


async def test_a_token_with_an_expiry_stops_working_when_it_expires(api: Api) -> None:
    customer = await api.customer()
    made = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/tokens?expires_in_days=30&label=crm",
        headers=api.operator,
    )
    assert made.status == 201
    headers = {"Authorization": f"Bearer {(await made.json())['token']}"}
    assert (await api.client.get("/api/v1/pool", headers=headers)).status == 200
    listed = [t for t in await _list(api, api.operator) if t["label"] == "crm"]
    expires = datetime.fromisoformat(str(listed[0]["expires_at"]))
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    async with api.sessions() as session, session.begin():
        await session.execute(
            sa.update(ApiToken)
            .where(ApiToken.id == listed[0]["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await api.client.get("/api/v1/pool", headers=headers)).status == 401


async def test_the_cli_lists_tokens_without_secrets_and_revokes_by_id(
    api: Api, fresh_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = await api.customer()
    secret = await create_token(api.sessions, role="operator", label="ops laptop")
    monkeypatch.setenv("CALLCONTROL_DATABASE__URL", fresh_db_url)
    assert await _run(["token", "list"]) == 0
    out = capsys.readouterr().out
    assert "ops laptop" in out and secret not in out and _secret(customer.headers) not in out
    line = next(line for line in out.splitlines() if line.endswith("ops laptop"))
    token_id = line.split("\t")[0]
    assert await _run(["token", "revoke", token_id]) == 0
    assert await _run(["token", "revoke", token_id]) == 1  # already revoked
    revoked = await api.client.get("/api/v1/pool", headers={"Authorization": f"Bearer {secret}"})
    assert revoked.status == 401


async def _run(argv: list[str]) -> int:
    """The CLI runs its own event loop: give it a thread."""
    import asyncio

    return await asyncio.to_thread(main, argv)
