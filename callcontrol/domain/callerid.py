"""Phone numbers in E.164, and the CallerID shown on outbound calls.

Owns the parsing of numbers as they reach the engine (inbound DIDs from
Asterisk, numbers dialled by a customer's SIP account) and the CallerID rule
of the service: the rented number is not shown by default; CallerID is an
extra service, and even then the number is shown only on calls to numbers of
the same country as the rented number (a German number shows on calls to
German numbers, not to Austrian ones). Every other call carries no CallerID.

Rules kept here:

- Countries come from the ``phonenumbers`` metadata, never a prefix table.
- "Same country" means the same ISO 3166 region code as ``phonenumbers`` gives
  it. Where calling codes are shared, regions differ: +1 is US, CA, and the
  Caribbean; +7 is RU and KZ; +44 is GB, JE, GG and IM. So a Canadian rented
  number shows on calls to Canada only, not to the US.
- A number whose region ``phonenumbers`` cannot place (an unassigned range in
  a shared calling code) has region ``"ZZ"``; non-geographic numbers (+800,
  +882, ...) have ``"001"``. Neither is ever "the same country" as anything,
  so calls to them carry no CallerID: when in doubt, withhold.
- Parsing accepts any number of possible length for its country (not only
  the ranges the metadata knows to be assigned: the metadata lags real
  allocations, and the carrier is the judge of existence). Garbage raises
  ``InvalidInput`` naming the input.
- Dialled numbers: ``+49...``, ``0049...`` (a leading 00 always means
  international), the home country's own international prefix (``011`` in
  the US), or the national format of the rented number's country
  (``030 1234567`` for DE). Spaces, dashes, dots, slashes and brackets are
  ignored; letters, ``*`` and ``#`` are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, ValidationResult

from callcontrol.domain.errors import InvalidInput

UNKNOWN_REGION = "ZZ"
NON_GEOGRAPHIC_REGION = "001"

_SEPARATORS = re.compile(r"[\s\-./()]")
_DIALLABLE = re.compile(r"\+?[0-9]+")
_MAX_INPUT = 40  # longer input is refused before it reaches phonenumbers

_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "no country uses that country code",
    ValidationResult.TOO_SHORT: "too short for a number of its country",
    ValidationResult.TOO_LONG: "too long for a number of its country",
    ValidationResult.INVALID_LENGTH: "the wrong length for a number of its country",
}


_PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "no country uses that country code",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short for a number of its country",
    NumberParseException.TOO_LONG: "too long for a phone number",
}


@dataclass(frozen=True, slots=True)
class E164:
    """A phone number in E.164. Build it with ``parse_e164``, ``parse_did`` or
    ``normalise_dialled``; the constructor only checks the shape."""

    digits: str  # country code + national number, no '+': "4930123456"
    country_code: int  # 49
    region: str  # "DE"; "ZZ" when unknown, "001" when non-geographic

    def __post_init__(self) -> None:
        if not (self.digits.isascii() and self.digits.isdigit() and 2 <= len(self.digits) <= 15):
            raise InvalidInput(f"{self.digits!r} is not the digits of an E.164 number")
        if not self.digits.startswith(str(self.country_code)):
            raise InvalidInput(
                f"E.164 number {self.digits!r} does not start with its country code "
                f"{self.country_code}"
            )

    def __str__(self) -> str:
        return f"+{self.digits}"

    @property
    def e164(self) -> str:
        """With the '+': "+4930123456"."""
        return f"+{self.digits}"

    @property
    def has_known_country(self) -> bool:
        return self.region not in (UNKNOWN_REGION, NON_GEOGRAPHIC_REGION)


def parse_e164(raw: str) -> E164:
    """Parse a number that must already be international: "+4930123456"."""
    text = _clean(raw)
    if not text.startswith("+"):
        raise InvalidInput(f"{raw!r} is not an international number: expected '+' and digits")
    return _to_e164(raw, _parse(raw, text, None))


def parse_did(raw: str) -> E164:
    """An inbound DID as Asterisk hands it: "4930123456", "+4930123456", "004930123456".

    National formats cannot be told apart from international ones without a
    country, so a DID must carry its country code.
    """
    text = _clean(raw)
    if text.startswith("00"):
        text = "+" + text[2:]
    elif not text.startswith("+"):
        text = "+" + text
    return _to_e164(raw, _parse(raw, text, None))


def normalise_dialled(dialled: str, home_region: str) -> E164:
    """A number dialled by a SIP account whose rented number is in ``home_region``."""
    region = home_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInput(f"home region {home_region!r} is not a known ISO 3166 region code")
    text = _clean(dialled)
    if text.startswith("00"):
        text = "+" + text[2:]
    return _to_e164(dialled, _parse(dialled, text, region))


def region_of(number: E164 | str) -> str:
    """The ISO 3166 alpha-2 region of a number ("DE"; "US" vs "CA" for +1)."""
    if isinstance(number, str):
        number = parse_e164(number)
    return number.region


def same_country(a: E164, b: E164) -> bool:
    """True when both numbers are in the same known region (see module rules)."""
    return a.has_known_country and a.region == b.region


class WithholdReason(StrEnum):
    NO_CALLERID_SERVICE = "no_callerid_service"
    NO_RENTED_NUMBER = "no_rented_number"
    OTHER_COUNTRY = "other_country"
    UNKNOWN_COUNTRY = "unknown_country"


@dataclass(frozen=True, slots=True)
class Present:
    """Show the rented number: From and P-Asserted-Identity user = ``number``."""

    number: E164


@dataclass(frozen=True, slots=True)
class Withhold:
    """Show no number: From "Anonymous" <sip:anonymous@anonymous.invalid>,
    ``Privacy: id``, no P-Asserted-Identity towards the destination."""

    reason: WithholdReason


CallerIdDecision = Present | Withhold


def decide_outbound_callerid(
    presented_number: E164 | None, has_callerid_service: bool, destination: E164
) -> CallerIdDecision:
    """Present the rented number only with the service and only within its country."""
    if not has_callerid_service:
        return Withhold(WithholdReason.NO_CALLERID_SERVICE)
    if presented_number is None:
        return Withhold(WithholdReason.NO_RENTED_NUMBER)
    if not (presented_number.has_known_country and destination.has_known_country):
        return Withhold(WithholdReason.UNKNOWN_COUNTRY)
    if presented_number.region != destination.region:
        return Withhold(WithholdReason.OTHER_COUNTRY)
    return Present(presented_number)


def _clean(raw: str) -> str:
    return _SEPARATORS.sub("", raw)


def _parse(raw: str, text: str, region: str | None) -> PhoneNumber:
    if not text or len(text) > _MAX_INPUT or not _DIALLABLE.fullmatch(text):
        raise InvalidInput(
            f"{raw!r} is not a phone number: expected digits, optionally after '+' or '00'"
        )
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        why = _PARSE_ERRORS.get(exc.error_type, "not a phone number")
        raise InvalidInput(f"{raw!r} is not a phone number: {why}") from None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        why = _REASONS.get(reason, "not a possible number")
        raise InvalidInput(f"{raw!r} is not a phone number: {why}")
    if reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        if text.startswith("+"):  # an international number cannot be a local one
            raise InvalidInput(f"{raw!r} is not a phone number: too short for its country")
        raise InvalidInput(
            f"{raw!r} is a local number without its area code: dial it with the area code"
        )
    return number


def _to_e164(raw: str, number: PhoneNumber) -> E164:
    country_code = number.country_code
    national = phonenumbers.national_significant_number(number)
    if country_code is None or not national:
        raise InvalidInput(f"{raw!r} is not a phone number")
    region = phonenumbers.region_code_for_number(number) or UNKNOWN_REGION
    return E164(digits=f"{country_code}{national}", country_code=country_code, region=region)
