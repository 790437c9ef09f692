"""Forwarding settings: up to two destinations, each value checked and named when wrong."""

from __future__ import annotations

import pytest
from test_api_fixtures import Api, Customer, api_fixture  # noqa: F401

from callcontrol.domain.vocabulary import NumberState


async def _owner_with_number(api: Api) -> tuple[Customer, str]:
    customer = await api.customer()
    return customer, await api.number(customer.account_id)


async def _put(
    api: Api, customer: Customer, did: str, body: object
) -> tuple[int, dict[str, object]]:
    response = await api.client.put(
        f"/api/v1/numbers/{did}/forwarding", json=body, headers=customer.headers
    )
    return response.status, await response.json()


async def _get(api: Api, customer: Customer, did: str) -> tuple[int, dict[str, object]]:
    response = await api.client.get(f"/api/v1/numbers/{did}/forwarding", headers=customer.headers)
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("kind", "given", "stored"),
    [
        ("sip_uri", "sip:alice@sip.Other-Provider.example", "sip:alice@sip.other-provider.example"),
        ("sip_uri", "sip:100@sip.other.example:5080", "sip:100@sip.other.example:5080"),
        ("ip", "192.0.2.7", "192.0.2.7"),
        ("ip", "192.0.2.7:5061", "192.0.2.7:5061"),
        ("ip", "sip:100@192.0.2.7:5061", "sip:100@192.0.2.7:5061"),
        ("ip", "2001:db8::1", "[2001:db8::1]"),
        ("pstn", "+49 151 1234 5678", "+4915112345678"),
    ],
)
async def test_a_valid_destination_is_stored_normalised(
    api: Api, kind: str, given: str, stored: str
) -> None:
    customer, did = await _owner_with_number(api)
    status, body = await _put(
        api,
        customer,
        did,
        {"mode": "sequential", "destinations": [{"type": kind, "target": given, "timeout_s": 25}]},
    )
    assert status == 200, body
    assert body["destinations"] == [
        {"position": 1, "type": kind, "target": stored, "timeout_s": 25}
    ]
    assert body["mode"] == "sequential"


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("sip_uri", "alice@example.com"),
        ("sip_uri", "sip:alice@"),
        ("sip_uri", "sip:alice@bad_host!"),
        ("sip_uri", "sip:alice@example.com:70000"),
        ("ip", "sip.example.com"),
        ("ip", "999.1.1.1"),
        ("ip", "sip:100@host.example:5060"),
        ("pstn", "12345"),
        ("pstn", "004915112345678x"),
        ("sip_account", "nobody"),
    ],
)
async def test_a_wrong_target_is_a_422_naming_the_destination(
    api: Api, kind: str, target: str
) -> None:
    customer, did = await _owner_with_number(api)
    status, body = await _put(
        api,
        customer,
        did,
        {
            "destinations": [
                {"type": "pstn", "target": "+4915112345678"},
                {"type": kind, "target": target},
            ]
        },
    )
    assert status == 422
    assert [d["field"] for d in body["details"]] == ["body.destinations.1.target"]  # type: ignore[index]


@pytest.mark.parametrize("timeout", [4, 121])
async def test_a_ring_timeout_outside_5_to_120_seconds_is_refused(api: Api, timeout: int) -> None:
    customer, did = await _owner_with_number(api)
    status, body = await _put(
        api,
        customer,
        did,
        {"destinations": [{"type": "pstn", "target": "+4915112345678", "timeout_s": timeout}]},
    )
    assert status == 422
    assert body["details"][0]["field"] == "body.destinations.0.timeout_s"  # type: ignore[index]


async def test_three_destinations_are_refused(api: Api) -> None:
    customer, did = await _owner_with_number(api)
    dest = {"type": "pstn", "target": "+4915112345678"}
    status, _ = await _put(api, customer, did, {"destinations": [dest, dest, dest]})
    assert status == 422


async def test_a_sip_account_destination_must_be_one_of_the_accounts_own_logins(api: Api) -> None:
    customer, did = await _owner_with_number(api)
    other = await api.customer()
    theirs = await api.client.post(
        f"/api/v1/accounts/{other.account_id}/sip-accounts",
        json={"login": "theirs"},
        headers=other.headers,
    )
    mine = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/sip-accounts",
        json={"login": "mine"},
        headers=customer.headers,
    )
    assert (theirs.status, mine.status) == (201, 201)
    refused, _ = await _put(
        api, customer, did, {"destinations": [{"type": "sip_account", "target": "theirs"}]}
    )
    accepted, _ = await _put(
        api, customer, did, {"destinations": [{"type": "sip_account", "target": "mine"}]}
    )
    assert (refused, accepted) == (422, 200)


async def test_replacing_forwarding_keeps_only_the_new_destinations(api: Api) -> None:
    customer, did = await _owner_with_number(api)
    two = [{"type": "pstn", "target": "+4915112345678"}, {"type": "ip", "target": "192.0.2.7"}]
    await _put(api, customer, did, {"destinations": two})
    await _put(api, customer, did, {"mode": "simultaneous", "destinations": [two[1]]})
    response = await api.client.get(f"/api/v1/numbers/{did}/forwarding", headers=customer.headers)
    body = await response.json()
    assert [(d["position"], d["target"]) for d in body["destinations"]] == [(1, "192.0.2.7")]


@pytest.mark.parametrize(
    ("kind", "target", "rule"),
    [
        ("ip", "127.0.0.1:5038", "own service"),  # Asterisk's AMI
        ("ip", "127.0.0.1:8088", "own service"),  # ARI
        ("ip", "127.0.0.1", "own service"),  # Asterisk's SIP (5060 when no port)
        ("ip", "127.0.0.7:5080", "loopback"),
        ("ip", "169.254.169.254", "link-local"),  # cloud metadata
        ("ip", "10.1.2.3", "private"),
        ("ip", "192.168.0.10:5060", "private"),
        ("ip", "100.64.0.1", "shared address space"),
        ("ip", "224.0.0.1", "multicast"),
        ("ip", "0.0.0.0", "unspecified"),
        ("ip", "::1", "loopback"),
        ("ip", "[::ffff:169.254.169.254]:80", "link-local"),
        ("sip_uri", "sip:a@[fe80::1]:5060", "link-local"),
        ("sip_uri", "sip:a@127.0.0.1:5038", "own service"),
        ("sip_uri", "sip:a@localhost", "loopback"),
        ("sip_uri", "sip:100@sip.example.net", "own service"),  # the provider's SIP domain
    ],
)
async def test_a_target_on_a_forbidden_address_is_a_422_naming_the_rule(
    api: Api, kind: str, target: str, rule: str
) -> None:
    customer, did = await _owner_with_number(api)
    status, body = await _put(
        api, customer, did, {"destinations": [{"type": kind, "target": target}]}
    )
    assert status == 422, body
    message = body["details"][0]["message"]  # type: ignore[index]
    assert f"rule: {rule}" in message, message
    _, stored = await _get(api, customer, did)
    assert stored["destinations"] == []


async def test_a_pstn_target_that_is_one_of_our_own_numbers_is_refused_as_a_loop(
    api: Api,
) -> None:
    customer, did = await _owner_with_number(api)
    other = await api.number(None, state=NumberState.AVAILABLE)  # anyone's, even the pool's
    status, body = await _put(
        api, customer, did, {"destinations": [{"type": "pstn", "target": other}]}
    )
    assert status == 422, body
    assert "own number" in body["details"][0]["message"]  # type: ignore[index]
    status, body = await _put(
        api, customer, did, {"destinations": [{"type": "pstn", "target": did}]}
    )
    assert status == 422 and "own number" in str(body)


async def test_a_free_test_may_not_forward_to_a_forbidden_address(api: Api) -> None:
    customer = await api.customer()
    did = await api.number(None, state=NumberState.AVAILABLE)
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/tests",
        json={"did": did, "destination": {"type": "ip", "target": "169.254.169.254"}},
        headers=customer.headers,
    )
    assert response.status == 422
    assert "link-local" in str(await response.json())
