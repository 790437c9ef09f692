"""The reader of the FastAGI dialplan's hangup report files (callcontrol/agi/reports.py):
complete lines only, offsets that survive a restart, files removed once finished."""

from __future__ import annotations

import os
from pathlib import Path

from callcontrol.agi.reports import (
    INCOMPLETE_SUFFIX,
    OFFSETS_FILE,
    HangupReports,
    ReportBatch,
)

MINUTE = "callcontrol-agi-20261202-1700.cdr"
NEXT = "callcontrol-agi-20261202-1701.cdr"


def append(folder: Path, name: str, text: str) -> None:
    with (folder / name).open("a") as handle:
        handle.write(text)


def test_only_complete_lines_are_taken_and_a_committed_batch_is_not_taken_again(
    tmp_path: Path,
) -> None:
    reports = HangupReports(tmp_path)
    append(tmp_path, MINUTE, "a,1\nb,2\nc,")  # c is still being written
    batch = reports.take()
    assert batch.lines == ["a,1", "b,2"]
    assert reports.take().lines == ["a,1", "b,2"], "not committed: taken again"
    reports.commit(batch)
    assert reports.take().lines == []
    append(tmp_path, MINUTE, "3\n")
    append(tmp_path, NEXT, "d,4\n")
    assert reports.take().lines == ["c,3", "d,4"], "oldest file first"


def test_a_restarted_reader_goes_on_where_the_last_commit_left(tmp_path: Path) -> None:
    first = HangupReports(tmp_path)
    append(tmp_path, MINUTE, "a,1\n")
    first.commit(first.take())
    append(tmp_path, MINUTE, "b,2\n")
    assert HangupReports(tmp_path).take().lines == ["b,2"]
    (tmp_path / OFFSETS_FILE).write_text("{not json")
    assert HangupReports(tmp_path).take().lines == ["a,1", "b,2"], "unreadable: from the start"


def test_a_finished_file_is_removed_once_unchanged_for_keep_s(tmp_path: Path) -> None:
    now = [10_000.0]
    reports = HangupReports(tmp_path, keep_s=60, clock=lambda: now[0])
    append(tmp_path, MINUTE, "a,1\n")
    os.utime(tmp_path / MINUTE, (9_950, 9_950))  # written 50 s ago
    reports.commit(reports.take())
    assert (tmp_path / MINUTE).exists(), "its minute may still be written"
    now[0] = 10_011.0
    reports.commit(reports.take())
    assert not (tmp_path / MINUTE).exists()
    # A late writer makes the name again: a new file, read from its start.
    append(tmp_path, MINUTE, "z,9\n")
    assert reports.take().lines == ["z,9"]


def test_a_file_with_lines_not_committed_is_never_removed(tmp_path: Path) -> None:
    reports = HangupReports(tmp_path, keep_s=1, clock=lambda: 1e12)
    append(tmp_path, MINUTE, "a,1\n")
    reports.commit(reports.take())
    append(tmp_path, MINUTE, "b,2\n")  # came after the batch
    reports.commit(ReportBatch([]))  # a batch with nothing in it still removes finished files
    assert (tmp_path / MINUTE).exists()
    assert reports.take().lines == ["b,2"]


def test_a_file_cut_or_replaced_under_the_reader_is_read_from_its_start(tmp_path: Path) -> None:
    reports = HangupReports(tmp_path)
    append(tmp_path, MINUTE, "a,1\nb,2\n")
    reports.commit(reports.take())
    (tmp_path / MINUTE).write_text("c,3\n")  # shorter than what was read
    assert reports.take().lines == ["c,3"]


def test_a_line_cut_off_at_the_end_of_a_file_is_set_aside_once_nothing_can_follow(
    tmp_path: Path,
) -> None:
    now = [10_000.0]
    reports = HangupReports(tmp_path, keep_s=60, clock=lambda: now[0])
    append(tmp_path, MINUTE, "a,1\nb,")  # Asterisk stopped in the middle of b's write()
    os.utime(tmp_path / MINUTE, (9_990, 9_990))
    batch = reports.take()
    assert batch.lines == ["a,1"]
    reports.commit(batch)
    assert (tmp_path / MINUTE).exists(), "younger than keep_s: the line may still end"
    now[0] = 10_100.0
    reports.commit(reports.take())
    assert not (tmp_path / MINUTE).exists()
    assert (tmp_path / (MINUTE + INCOMPLETE_SUFFIX)).read_text() == "a,1\nb,"
    assert reports.take().lines == [], "not read again"


def test_a_file_of_one_unfinished_line_is_set_aside_too(tmp_path: Path) -> None:
    reports = HangupReports(tmp_path, keep_s=1, clock=lambda: 1e12)
    append(tmp_path, NEXT, "half a li")
    reports.commit(reports.take())
    assert (tmp_path / (NEXT + INCOMPLETE_SUFFIX)).exists() and not (tmp_path / NEXT).exists()


def test_an_unfinished_line_is_kept_while_lines_before_it_are_not_committed(
    tmp_path: Path,
) -> None:
    reports = HangupReports(tmp_path, keep_s=1, clock=lambda: 1e12)
    append(tmp_path, MINUTE, "a,1\nb,")
    reports.take()  # its CDR write failed: the batch is not committed
    reports.commit(ReportBatch([]))
    assert (tmp_path / MINUTE).exists()
    append(tmp_path, MINUTE, "2\n")  # and a line that ends late is taken whole
    assert reports.take().lines == ["a,1", "b,2"]
