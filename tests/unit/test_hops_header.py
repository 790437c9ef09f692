"""The hop count an inbound INVITE carried, as the dialplan passes it to Stasis."""

from __future__ import annotations

import pytest

from callcontrol.domain.contract import HOPS_HEADER, HOPS_HEADER_VARIABLE, parse_hops


@pytest.mark.parametrize(
    ("raw", "hops"),
    [
        (None, 0),  # no Stasis argument (an old dialplan)
        ("", 0),  # the header was absent: PJSIP_HEADER(read) gives nothing
        ("0", 0),
        ("1", 1),
        (" 2 ", 2),
        ("17", 17),
        ("123456789", 999),  # absurd values count as many hops, not as none
        ("-1", 0),
        ("abc", 0),  # not ours: no hop, never a loop
        ("\u00b2", 0),  # a superscript two is a digit to str.isdigit, not to us
        ("1e3", 0),
        ("1234567890", 0),  # longer than any count we write
    ],
)
def test_the_hop_header_is_read_as_a_small_count(raw: str | None, hops: int) -> None:
    assert parse_hops(raw) == hops


def test_the_leg_variable_adds_the_header_the_dialplan_reads() -> None:
    assert HOPS_HEADER_VARIABLE == f"PJSIP_HEADER(add,{HOPS_HEADER})"
