"""The abuse rules of forwarding targets, without a database."""

from __future__ import annotations

import ipaddress

import pytest

from callcontrol.domain.destinations import (
    DestinationPolicy,
    DestinationRefused,
    address_rule,
    network_target,
    policy_endpoints,
)
from callcontrol.domain.vocabulary import DestinationType

IP, SIP, PSTN = DestinationType.IP, DestinationType.SIP_URI, DestinationType.PSTN
OWN = policy_endpoints([("127.0.0.1", 5060), ("127.0.0.1", 5038), ("localhost", 8088)])


def test_a_public_address_is_accepted_and_documentation_ranges_are_not_refused() -> None:
    policy = DestinationPolicy(own_endpoints=OWN)
    assert policy.refusal(IP, "8.8.8.8:5060") is None
    assert policy.refusal(IP, "192.0.2.7") is None
    assert policy.refusal(SIP, "sip:alice@sip.other-provider.example") is None


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "link-local"),
        ("172.16.5.5", "private"), ("fd00::1", "private"), ("239.1.1.1", "multicast"),
        ("0.0.0.0", "unspecified"), ("255.255.255.255", "broadcast or reserved"),
        ("::ffff:10.0.0.1", "private"), ("100.127.0.1", "shared address space"),
    ],
)  # fmt: skip
def test_each_forbidden_range_names_its_rule(address: str, rule: str) -> None:
    assert address_rule(ipaddress.ip_address(address)) == rule


def test_allowed_networks_lift_the_address_rules_but_never_for_our_own_services() -> None:
    lab = DestinationPolicy(
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), own_endpoints=OWN
    )
    assert lab.refusal(IP, "127.0.0.3:5080") is None
    for own in ("127.0.0.1:5038", "127.0.0.1", "sip:x@127.0.0.1:8088", "[::1]:8088"):
        refused = lab.refusal(SIP if own.startswith("sip:") else IP, own)
        assert isinstance(refused, DestinationRefused) and refused.rule == "own service", own
    assert lab.refusal(IP, "169.254.169.254") is not None


def test_a_pstn_target_known_as_our_own_number_is_a_loop() -> None:
    policy = DestinationPolicy()
    refused = policy.refusal(PSTN, "+4930123456", own_number=True)
    assert refused is not None and refused.rule == "own number"
    assert policy.refusal(PSTN, "+4930123456") is None


def test_a_target_without_a_port_means_sip_5060() -> None:
    assert network_target("192.0.2.7").port == 5060
    assert network_target("sip:a@[2001:db8::1]:5061").port == 5061
    assert network_target("[2001:db8::1]").port == 5060
    assert network_target("sip:a@host.example").address is None
