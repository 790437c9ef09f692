"""Forwarding targets: their syntax and the abuse rules, one pure module.

The API checks a target with ``normalise_target`` + ``DestinationPolicy.refusal``
when a customer sets it; the call path asks ``refusal`` again when a call is
routed (settings change, DIDs are imported later), so both say the same thing.

Rules kept here:
- ``sip_uri``: ``sip:user@host[:port]`` (a DNS name or an address, IPv6 in
  brackets; port 1..65535); ``ip``: ``192.0.2.7``, ``192.0.2.7:5061`` or
  ``sip:100@192.0.2.7:5061``; ``pstn``: E.164, stored ``+digits``.
- An address in a target may not be loopback (127.0.0.0/8, ::1), link-local
  (169.254.0.0/16, fe80::/10 - cloud metadata lives there), private (RFC 1918,
  fc00::/7), shared (100.64.0.0/10), multicast, unspecified (0.0.0.0, ::),
  broadcast or reserved (240.0.0.0/4): each refusal names its rule. The operator
  lifts a rule for chosen networks with ``allowed_networks`` (a lab on loopback).
- The provider's own services (Asterisk SIP, ARI, AMI: ``own_endpoints``) are
  refused whatever ``allowed_networks`` says; a target without a port means
  SIP's 5060. A host name ``localhost`` (or ``*.localhost``) and the provider's
  own SIP domains are refused too. Host names are not resolved here (DNS at
  validation time proves nothing about call time).
- A PSTN target that is one of the provider's own DIDs is refused: forwarding a
  number to another of ours goes out to the carrier and comes back in, a loop
  when the chain closes. Refused, not routed internally (say: forward to the
  customer's SIP account instead).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from callcontrol.domain.callerid import parse_e164
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import DestinationType

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SIP_DEFAULT_PORT = 5060

_USER = r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/]+"
_SIP = re.compile(
    rf"^sip:(?P<user>{_USER})@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\[\]/\s]+)(?::(?P<port>[0-9]{{1,5}}))?$",
    re.I,
)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_BARE_IP = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[0-9.]+|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)(?::(?P<port>[0-9]{1,5}))?$"
)
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")

# (rule name, networks), checked in order; the first that holds names the refusal.
_RULES: tuple[tuple[str, tuple[IpNetwork, ...]], ...] = tuple(
    (name, tuple(ipaddress.ip_network(n) for n in nets))
    for name, nets in (
        ("unspecified", ("0.0.0.0/32", "::/128")),
        ("loopback", ("127.0.0.0/8", "::1/128")),
        ("link-local", ("169.254.0.0/16", "fe80::/10")),
        ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
        ("shared address space", ("100.64.0.0/10",)),
        ("multicast", ("224.0.0.0/4", "ff00::/8")),
        ("broadcast or reserved", ("240.0.0.0/4", "0.0.0.0/8")),
    )
)


class DestinationRefused(InvalidInput):
    """A well-formed target the abuse rules refuse; ``rule`` names which."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One of the provider's own services: an address and a port."""

    address: IpAddress
    port: int


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed network target: the host (an address or a DNS name) and its port."""

    host: str
    address: IpAddress | None
    port: int


@dataclass(frozen=True)
class DestinationPolicy:
    allowed_networks: tuple[IpNetwork, ...] = ()
    own_endpoints: frozenset[Endpoint] = frozenset()
    own_domains: frozenset[str] = frozenset()

    def refusal(
        self, kind: DestinationType, target: str, *, own_number: bool = False
    ) -> DestinationRefused | None:
        """Why a normalised target is refused, or None when it may be rung.
        ``own_number``: the caller looked the PSTN target up among our DIDs."""
        if kind is DestinationType.SIP_ACCOUNT:
            return None
        if kind is DestinationType.PSTN:
            if own_number:
                return DestinationRefused(
                    f"{target} is one of this provider's own numbers: forwarding to it would "
                    "loop through the carrier (forward to a SIP account instead)",
                    "own number",
                )
            return None
        return self._network_refusal(network_target(target))

    def check(self, kind: DestinationType, target: str, *, own_number: bool = False) -> None:
        refused = self.refusal(kind, target, own_number=own_number)
        if refused is not None:
            raise refused

    def _network_refusal(self, where: Target) -> DestinationRefused | None:
        host = where.host.lower()
        if where.address is None:
            if host == "localhost" or host.endswith(".localhost"):
                return DestinationRefused(f"{host} is the local host (rule: loopback)", "loopback")
            if host in self.own_domains:
                return DestinationRefused(
                    f"{host} is this provider's own SIP domain (rule: own service); "
                    "forward to the SIP account itself", "own service",
                )  # fmt: skip
            return None
        address = where.address
        if Endpoint(address, where.port) in self.own_endpoints or any(
            e.port == where.port and e.address.is_unspecified for e in self.own_endpoints
        ):
            return DestinationRefused(
                f"{address}:{where.port} is one of this provider's own services "
                "(Asterisk, ARI or AMI) (rule: own service)", "own service",
            )  # fmt: skip
        if any(address in net for net in self.allowed_networks if net.version == address.version):
            return None
        rule = address_rule(address)
        if rule is None:
            return None
        return DestinationRefused(f"{address} is a {rule} address (rule: {rule})", rule)


def address_rule(address: IpAddress) -> str | None:
    """The name of the rule that refuses ``address`` (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address) and address in _IPV4_MAPPED:
        mapped = address.ipv4_mapped
        assert mapped is not None
        return address_rule(mapped)
    for name, networks in _RULES:
        if any(address in net for net in networks if net.version == address.version):
            return name
    return None


def policy_endpoints(pairs: Iterable[tuple[str, int]]) -> frozenset[Endpoint]:
    """Own endpoints from (host, port) pairs of the settings; names that are not
    addresses are skipped (``localhost`` counts as 127.0.0.1 and ::1)."""
    found = set()
    for host, port in pairs:
        hosts = ("127.0.0.1", "::1") if host.lower() == "localhost" else (host.strip("[]"),)
        for one in hosts:
            try:
                found.add(Endpoint(ipaddress.ip_address(one), port))
            except ValueError:
                continue
    return frozenset(found)


# -- syntax --------------------------------------------------------------------------------


def _port(raw: str | None) -> str:
    if raw is None:
        return ""
    if not 1 <= int(raw) <= 65535:
        raise InvalidInput(f"port {raw} is outside 1..65535")
    return f":{int(raw)}"


def _address(host: str) -> str:
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise InvalidInput(f"{host!r} is not an IP address") from None
    return f"[{address.compressed}]" if address.version == 6 else str(address)


def check_sip_uri(target: str) -> str:
    match = _SIP.match(target.strip())
    if match is None:
        raise InvalidInput(f"{target!r} is not a SIP URI: expected sip:user@host[:port]")
    host = match["host"]
    if host.startswith("[") or host.replace(".", "").isdigit():
        host = _address(host)
    elif not _HOSTNAME.match(host):
        raise InvalidInput(f"{host!r} is not a host name or IP address")
    return f"sip:{match['user']}@{host.lower()}{_port(match['port'])}"


def check_ip(target: str) -> str:
    text = target.strip()
    if text.lower().startswith("sip:"):
        match = _SIP.match(text)
        if match is None:
            raise InvalidInput(f"{target!r} is not sip:user@address[:port]")
        return f"sip:{match['user']}@{_address(match['host'])}{_port(match['port'])}"
    bare = _BARE_IP.match(text)
    if bare is not None and text.count(":") > 1 and not text.startswith("["):
        return _address(text)  # a bare IPv6 address: a port needs brackets
    if bare is None:
        raise InvalidInput(
            f"{target!r} is not an IP address: expected e.g. 192.0.2.7, 192.0.2.7:5061 "
            "or sip:100@192.0.2.7:5061"
        )
    return _address(bare["host"]) + _port(bare["port"])


def normalise_target(kind: DestinationType, target: str) -> str:
    """The stored form of a ``sip_uri``, ``ip`` or ``pstn`` target (``InvalidInput``
    saying what is wrong). SIP account logins are checked against the account."""
    if kind is DestinationType.SIP_URI:
        return check_sip_uri(target)
    if kind is DestinationType.IP:
        return check_ip(target)
    if kind is DestinationType.PSTN:
        return parse_e164(target).e164
    raise InvalidInput(f"a {kind} target is checked against the account's SIP accounts")


def network_target(normalised: str) -> Target:
    """Host and port of a normalised ``sip_uri`` or ``ip`` target."""
    text = normalised
    if text.lower().startswith("sip:"):
        text = text.split("@", 1)[1]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else SIP_DEFAULT_PORT
    elif text.count(":") > 1:
        host, port = text, SIP_DEFAULT_PORT
    else:
        host, _, raw_port = text.partition(":")
        port = int(raw_port) if raw_port else SIP_DEFAULT_PORT
    try:
        address: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    return Target(host=host, address=address, port=port)
