"""E.164 parsing and the outbound CallerID rule: the rented number is shown only
with the CallerID service and only on calls within its own country."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from callcontrol.domain.callerid import (
    E164,
    Present,
    Withhold,
    WithholdReason,
    decide_outbound_callerid,
    normalise_dialled,
    parse_did,
    parse_e164,
    region_of,
    same_country,
)
from callcontrol.domain.errors import InvalidInput

BERLIN = parse_e164("+4930123456")


# --- parsing -------------------------------------------------------------------


def test_an_e164_number_knows_its_digits_country_code_and_region() -> None:
    assert BERLIN == E164(digits="4930123456", country_code=49, region="DE")
    assert str(BERLIN) == "+4930123456"
    assert BERLIN.e164 == "+4930123456"


@pytest.mark.parametrize("raw", ["4930123456", "+4930123456", "004930123456", " +49 30 123456 "])
def test_inbound_dids_are_parsed_with_or_without_plus(raw: str) -> None:
    assert parse_did(raw) == BERLIN


@pytest.mark.parametrize("raw", ["", "s", "abc", "49301234x6", "+", "123", "+999123456", "4" * 20])
def test_garbage_dids_are_refused_naming_the_input(raw: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_did(raw)
    assert repr(raw) in str(err.value)


@pytest.mark.parametrize(
    "dialled",
    ["+49 30 1234567", "0049301234567", "030 1234567", "030/123-4567", "(030) 1234567"],
)
def test_dialled_numbers_in_german_formats_normalise_to_the_same_e164(dialled: str) -> None:
    assert normalise_dialled(dialled, "DE").e164 == "+49301234567"


def test_an_international_number_dialled_with_00_from_germany_goes_abroad() -> None:
    number = normalise_dialled("0043 1 5121234", "DE")
    assert (number.country_code, number.region) == (43, "AT")


def test_the_home_countrys_own_international_prefix_is_understood() -> None:
    assert normalise_dialled("011 49 30 1234567", "US").e164 == "+49301234567"


def test_national_format_is_read_in_the_rented_numbers_country() -> None:
    assert normalise_dialled("(201) 555-0123", "US").region == "US"
    assert normalise_dialled("8 (495) 123-45-67", "RU").e164 == "+74951234567"


@pytest.mark.parametrize(
    ("dialled", "why"),
    [
        ("", "not a phone number"),
        ("1-800-FLOWERS", "expected digits"),
        ("*21#", "expected digits"),
        ("+49 30", "too short"),
        ("+49 30 1234567890123456", "too long"),
        ("+999 1234567", "country code"),
        ("030 12;34", "expected digits"),
        ("030\x001234567", "expected digits"),
    ],
)
def test_garbage_dialled_numbers_are_refused_with_the_input_named(dialled: str, why: str) -> None:
    with pytest.raises(InvalidInput) as err:
        normalise_dialled(dialled, "DE")
    assert repr(dialled) in str(err.value)
    assert why in str(err.value)


def test_an_unknown_home_region_is_refused() -> None:
    with pytest.raises(InvalidInput, match="'XX'"):
        normalise_dialled("030 1234567", "XX")


def test_shared_calling_codes_resolve_to_distinct_regions() -> None:
    assert region_of("+12015550123") == "US"
    assert region_of("+15062345678") == "CA"
    assert region_of("+74951234567") == "RU"
    assert region_of("+77123456789") == "KZ"
    assert region_of("+441534456789") == "JE"
    assert region_of(BERLIN) == "DE"


def test_non_geographic_and_unplaceable_numbers_have_no_country() -> None:
    freephone = parse_e164("+80012345678")
    assert freephone.region == "001"
    assert not freephone.has_known_country
    unassigned = parse_e164("+15550000000")  # a possible +1 number no region claims
    assert unassigned.region == "ZZ"
    assert not same_country(unassigned, unassigned)


def test_the_constructor_refuses_digits_that_do_not_start_with_the_country_code() -> None:
    with pytest.raises(InvalidInput):
        E164(digits="4930123456", country_code=43, region="AT")
    with pytest.raises(InvalidInput):
        E164(digits="+4930123456", country_code=49, region="DE")


# --- CallerID decision ---------------------------------------------------------


def test_without_the_service_the_number_is_withheld_even_within_the_country() -> None:
    decision = decide_outbound_callerid(BERLIN, False, parse_e164("+49891234567"))
    assert decision == Withhold(WithholdReason.NO_CALLERID_SERVICE)


def test_with_the_service_a_german_number_is_shown_on_calls_to_germany() -> None:
    decision = decide_outbound_callerid(BERLIN, True, normalise_dialled("089 1234567", "DE"))
    assert decision == Present(BERLIN)


def test_with_the_service_a_german_number_is_withheld_on_calls_to_austria() -> None:
    decision = decide_outbound_callerid(BERLIN, True, normalise_dialled("0043 1 5121234", "DE"))
    assert decision == Withhold(WithholdReason.OTHER_COUNTRY)


def test_a_canadian_number_is_withheld_on_calls_to_the_us_despite_the_shared_plus_1() -> None:
    toronto = parse_e164("+14165550123")
    assert toronto.region == "CA"
    assert isinstance(decide_outbound_callerid(toronto, True, parse_e164("+12015550123")), Withhold)
    assert decide_outbound_callerid(toronto, True, parse_e164("+15062345678")) == Present(toronto)


def test_a_russian_number_is_withheld_on_calls_to_kazakhstan() -> None:
    moscow = parse_e164("+74951234567")
    decision = decide_outbound_callerid(moscow, True, parse_e164("+77123456789"))
    assert decision == Withhold(WithholdReason.OTHER_COUNTRY)


def test_an_account_without_a_rented_number_withholds() -> None:
    decision = decide_outbound_callerid(None, True, BERLIN)
    assert decision == Withhold(WithholdReason.NO_RENTED_NUMBER)


def test_calls_to_numbers_without_a_country_withhold() -> None:
    decision = decide_outbound_callerid(BERLIN, True, parse_e164("+80012345678"))
    assert decision == Withhold(WithholdReason.UNKNOWN_COUNTRY)


# --- properties ----------------------------------------------------------------

_TYPES = [
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
]


def _examples() -> list[E164]:
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in _TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            number = parse_e164(phonenumbers.format_number(example, 0))
            if number.region == region:  # a few metadata examples overlap another region
                out.append(number)
    return out


EXAMPLES = _examples()


def test_example_numbers_cover_nearly_every_region() -> None:
    regions = {n.region for n in EXAMPLES}
    assert len(regions) >= 230


@given(st.sampled_from(EXAMPLES), st.sampled_from(EXAMPLES))
def test_same_region_presents_and_other_region_withholds(rented: E164, dest: E164) -> None:
    decision = decide_outbound_callerid(rented, True, dest)
    if rented.region == dest.region:
        assert decision == Present(rented)
    else:
        assert decision == Withhold(WithholdReason.OTHER_COUNTRY)


@given(st.sampled_from(EXAMPLES), st.booleans())
def test_a_did_round_trips_with_or_without_plus(number: E164, plus: bool) -> None:
    raw = number.e164 if plus else number.digits
    assert parse_did(raw) == number


@given(st.sampled_from(EXAMPLES))
def test_the_national_format_dialled_at_home_is_the_same_number(number: E164) -> None:
    pn = phonenumbers.parse(number.e164)
    national = phonenumbers.format_number(pn, phonenumbers.PhoneNumberFormat.NATIONAL)
    assume(phonenumbers.parse(national, number.region) == pn)  # a few need a carrier code
    assert normalise_dialled(national, number.region) == number


@given(st.text(max_size=30), st.sampled_from(["DE", "US", "RU", "GB"]))
def test_any_text_either_normalises_or_raises_invalid_input(text: str, region: str) -> None:
    try:
        number = normalise_dialled(text, region)
    except InvalidInput:
        return
    assert number.digits.isdigit()
