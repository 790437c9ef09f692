"""``callcontrol inventory import`` and ``callcontrol rates import``: the API's rules
from a script (all or nothing; bad rows printed with their line; exit code 1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.cli import main
from callcontrol.db.models import Number, Rate

HEADER = "e164,country,city,kind,monthly_fee_minor,setup_fee_minor,currency"


async def _count(
    sessions: async_sessionmaker[AsyncSession], model: type[Number] | type[Rate]
) -> int:
    async with sessions() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


async def test_a_bad_inventory_file_prints_its_lines_and_imports_nothing(
    db_session: async_sessionmaker[AsyncSession], fresh_db_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("CALLCONTROL_DATABASE__URL", fresh_db_url)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"{HEADER}\n+493012345601,DE,Berlin,voice,500,100,EUR\n+49301,DE,,voice,1,1,EUR\n"
    )
    assert await asyncio.to_thread(main, ["inventory", "import", str(bad)]) == 1
    assert "line 3: e164:" in capsys.readouterr().err
    assert await _count(db_session, Number) == 0
    good = tmp_path / "good.csv"
    good.write_text(f"{HEADER}\n+493012345601,DE,Berlin,voice,500,100,EUR\n")
    assert await asyncio.to_thread(main, ["inventory", "import", str(good)]) == 0
    assert await _count(db_session, Number) == 1


async def test_a_rate_sheet_is_imported_from_the_command_line(
    db_session: async_sessionmaker[AsyncSession], fresh_db_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("CALLCONTROL_DATABASE__URL", fresh_db_url)
    sheet = tmp_path / "rates.csv"
    sheet.write_text("prefix,rate_per_minute_minor,currency\n49,2,EUR\n4915,9,EUR\n")
    assert await asyncio.to_thread(main, ["rates", "import", str(sheet)]) == 0
    assert await _count(db_session, Rate) == 2
