"""Tokens, roles and the shape of every error: the API never answers 500 to a bad request."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from openapi_spec_validator import validate
from test_api_fixtures import Api, api_fixture  # noqa: F401

from callcontrol.db.models import Account, ApiToken
from callcontrol.web.api import all_routes
from callcontrol.web.api.auth import token_hash


def _is_error(body: dict[str, object], code: str) -> bool:
    return body["error"] == code and isinstance(body["message"], str) and "details" in body


async def test_a_request_without_a_token_is_refused_with_401(api: Api) -> None:
    response = await api.client.get("/api/v1/pool")
    assert response.status == 401
    assert _is_error(await response.json(), "unauthorized")


async def test_an_unknown_token_is_refused_with_401(api: Api) -> None:
    response = await api.client.get("/api/v1/pool", headers={"Authorization": "Bearer nope"})
    assert response.status == 401


async def test_a_revoked_token_is_refused_with_401(api: Api) -> None:
    customer = await api.customer()
    token = customer.headers["Authorization"].split()[1]
    async with api.sessions() as session, session.begin():
        await session.execute(
            sa.update(ApiToken)
            .where(ApiToken.token_hash == token_hash(token))
            .values(revoked_at=datetime.now(UTC))
        )
    response = await api.client.get(
        f"/api/v1/accounts/{customer.account_id}", headers=customer.headers
    )
    assert response.status == 401


async def test_tokens_are_stored_only_as_their_sha256(api: Api) -> None:
    customer = await api.customer()
    token = customer.headers["Authorization"].split()[1]
    async with api.sessions() as session:
        hashes = set(await session.scalars(sa.select(ApiToken.token_hash)))
    assert token_hash(token) in hashes and token not in hashes


async def test_a_customer_may_not_use_operator_endpoints(api: Api) -> None:
    customer = await api.customer()
    response = await api.client.get("/api/v1/accounts", headers=customer.headers)
    assert response.status == 403
    top_up = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/top-ups",
        json={"amount_minor": 100}, headers=customer.headers,
    )  # fmt: skip
    assert top_up.status == 403


async def test_malformed_json_is_a_400_and_changes_nothing(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/accounts",
        data=b'{"name": "x"',
        headers={**api.operator, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert _is_error(await response.json(), "bad_request")
    async with api.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Account)) == 0


async def test_an_unknown_field_is_named_in_a_422(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/accounts", json={"name": "Acme", "colour": "red"}, headers=api.operator
    )
    body = await response.json()
    assert response.status == 422
    assert [d["field"] for d in body["details"]] == ["body.colour"]


async def test_a_wrong_type_is_named_in_a_422_and_not_coerced(api: Api) -> None:
    customer = await api.customer()
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/top-ups",
        json={"amount_minor": "100"}, headers=api.operator,
    )  # fmt: skip
    body = await response.json()
    assert response.status == 422
    assert body["details"][0]["field"] == "body.amount_minor"


async def test_a_malformed_did_in_the_path_is_a_422_naming_it(api: Api) -> None:
    response = await api.client.get("/api/v1/numbers/not-a-number", headers=api.operator)
    body = await response.json()
    assert response.status == 422
    assert body["details"][0]["field"] == "path.did"


async def test_an_id_beyond_the_database_range_is_a_404(api: Api) -> None:
    response = await api.client.get("/api/v1/accounts/99999999999999", headers=api.operator)
    assert response.status == 404
    assert _is_error(await response.json(), "not_found")


async def test_an_unknown_api_path_is_a_json_404(api: Api) -> None:
    response = await api.client.get("/api/v1/nothing-here", headers=api.operator)
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_a_nul_character_in_a_name_is_refused(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/accounts", json={"name": "a\u0000b"}, headers=api.operator
    )
    assert response.status == 422


async def test_openapi_json_is_a_valid_spec_describing_every_route(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    spec = await response.json()
    validate(spec)
    served = {(r.method.lower(), r.path) for r in all_routes()}
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented


async def test_docs_are_a_self_contained_html_page(api: Api) -> None:
    response = await api.client.get("/docs")
    text = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert "/openapi.json" in text and "https://" not in text
