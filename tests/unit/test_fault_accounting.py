"""How fault runs are counted: SIPp call logs, recovery time, percentiles (pure, no I/O)."""

from __future__ import annotations

from collections import Counter

from support.fault_calls import CallRecord, parse_log
from support.faults import Probe, percentile, probes_from, recovery_s

from bench.faults import Row, caller_number, count_cdrs, how_it_ended

LOG = """\
INV 2026-12-01\t00:00:00.100000\t100.100000 1-42@127.0.0.2
ANS 2026-12-01\t00:00:00.300000\t100.300000 1-42@127.0.0.2
BYE 2026-12-01\t00:00:07.300000\t107.300000 1-42@127.0.0.2
INV 2026-12-01\t00:00:00.200000\t100.200000 2-42@127.0.0.2
FAIL 2026-12-01\t00:00:00.210000\t100.210000 2-42@127.0.0.2 503 34 cause=34
INV 2026-12-01\t00:00:00.300000\t100.300000 3-42@127.0.0.2
FAIL 2026-12-01\t00:00:00.310000\t100.310000 3-42@127.0.0.2 603
INV 2026-12-01\t00:00:00.400000\t100.400000 4-42@127.0.0.2
ANS 2026-12-01\t00:00:00.500000\t100.500000 4-42@127.0.0.2
HUNG 2026-12-01\t00:00:20.500000\t120.500000 4-42@127.0.0.2
INV 2026-12-01\t00:00:00.500000\t100.500000 5-42@127.0.0.2
Resolving remote host '127.0.0.1'... Done.
"""


def test_a_call_log_gives_each_call_its_outcome_and_how_it_ended() -> None:
    calls = parse_log(LOG.splitlines())

    assert [calls[f"{n}-42@127.0.0.2"].outcome for n in range(1, 6)] == [
        "answered", "503", "603", "answered", "none",
    ]  # fmt: skip
    assert calls["1-42@127.0.0.2"].end == "BYE"
    assert calls["1-42@127.0.0.2"].answered_at == 100.3
    assert calls["2-42@127.0.0.2"].failed_cause == "34"
    assert calls["3-42@127.0.0.2"].failed_cause is None  # no Reason header
    assert calls["4-42@127.0.0.2"].end == "HUNG"


def test_a_probe_is_good_only_when_answered_in_time_and_its_own_bye_was_answered() -> None:
    log = [
        "INV d t 1.0 1-7@x", "ANS d t 1.1 1-7@x", "END d t 1.5 1-7@x",
        "INV d t 2.0 2-7@x", "ANS d t 2.1 2-7@x", "BYEFAIL d t 7.5 2-7@x",
        "INV d t 3.0 3-7@x", "FAIL d t 3.0 3-7@x 503 34",
        "INV d t 4.0 4-7@x", "ANS d t 6.5 4-7@x", "END d t 6.9 4-7@x",
    ]  # fmt: skip
    probes = probes_from(parse_log(log), answer_limit_s=2.0)

    assert [(p.placed_at, p.ok) for p in probes] == [
        (1.0, True), (2.0, False), (3.0, False), (4.0, False),  # 4.0: answered 2.5 s late
    ]  # fmt: skip


def probes(*states: tuple[float, bool]) -> list[Probe]:
    return [Probe(at, ok, "x") for at, ok in states]


def test_recovery_is_the_first_good_probe_after_the_last_bad_one_counted_from_the_fault_end() -> (
    None
):
    run = probes((9, True), (10, False), (11, True), (12, False), (13, False), (14.5, True))

    assert recovery_s(run, fault_start=10, fault_end=12) == 2.5


def test_no_failed_probe_means_no_outage_and_a_last_failure_means_not_recovered() -> None:
    assert recovery_s(probes((10, True), (11, True)), fault_start=10, fault_end=10) == 0.0
    assert recovery_s(probes((10, True), (11, False)), fault_start=10, fault_end=10) is None


def test_failures_before_the_fault_do_not_count_and_recovery_is_never_negative() -> None:
    run = probes((5, False), (10, True), (10.2, False), (10.4, True))

    assert recovery_s(run, fault_start=10, fault_end=12) == 0.0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 99) is None
    assert percentile([1.0, 2.0, 3.0], 99) == 3.0


def call(answered: float, ended: float | None, end: str | None = "BYE") -> CallRecord:
    return CallRecord(
        "1-1@x", placed_at=answered - 0.1, answered_at=answered, ended_at=ended, end=end
    )


def test_a_callers_call_ended_normally_only_by_a_bye_inside_the_far_ends_hold_window() -> None:
    hold = (5000, 10_000)

    assert how_it_ended(call(100, 105.01), hold) == "normal"
    assert how_it_ended(call(100, 110.5), hold) == "normal"  # the far end's BYE, a bit late
    assert how_it_ended(call(100, 101), hold) == "cut"  # before any far end hangs up
    assert how_it_ended(call(100, 125), hold) == "late"  # sat alone after the far end left
    assert how_it_ended(call(100, 130, "HUNG"), hold) == "never"  # no BYE: hung up itself
    assert how_it_ended(call(100, None, None), hold) == "never"


def test_cdrs_are_matched_per_caller_and_the_dialplan_fallback_expects_none() -> None:
    calls = parse_log([
        "INV d t 1.0 1-9@x", "ANS d t 1.1 1-9@x",
        "INV d t 2.0 2-9@x", "FAIL d t 2.0 2-9@x 503 34",
        "INV d t 3.0 3-9@x", "FAIL d t 3.0 3-9@x 603 41",
        "INV d t 4.0 4-9@x",
    ])  # fmt: skip
    row = Row(case="t")

    count_cdrs(row, calls, Counter({"4915101": 1, "4915103": 2}), "491510")

    assert (row.cdrs_expected, row.cdrs_missing, row.cdrs_duplicated) == (3, 1, 1)
    assert caller_number("491510", "12-345@127.0.0.2") == "49151012"
