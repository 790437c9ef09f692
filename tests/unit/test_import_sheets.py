"""Inventory and rate sheets: bad input is InvalidInput (a 422), never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.inventory import csv_rows, parse_rows
from callcontrol.domain.rate_sheet import parse_rate_sheet


@given(st.text(max_size=200))
def test_any_text_is_a_rate_sheet_or_invalid_input(text: str) -> None:
    try:
        parse_rate_sheet(text)
    except InvalidInput:
        pass


@given(st.text(max_size=200))
def test_any_text_is_an_inventory_file_or_invalid_input(text: str) -> None:
    try:
        parse_rows(csv_rows(text))
    except InvalidInput:
        pass


def test_a_carriage_return_in_a_cell_is_read_not_a_crash() -> None:
    """Found by schemathesis: csv.Error 'new-line character seen in unquoted field' -> 500."""
    with pytest.raises(InvalidInput):
        parse_rate_sheet("\r\U0003f85fx")
    rows, errors = parse_rate_sheet("prefix,rate_per_minute_minor,currency\r\n49,2,EUR\r\n")
    assert [r.prefix for r in rows] == ["49"] and errors == []
