"""bench.calls' clean-rate summary: the limit is where a path first failed, not its
highest clean step, and a share of the twin says when the twin's own limit is unknown."""

from __future__ import annotations

from bench.calls import CleanLimit, Step, clean_limit, share_of_twin


def step(rate: int, path: str, *, failed: int = 0, retransmissions: int = 0) -> Step:
    calls = rate * 10
    return Step(
        rate=rate, case="forward", path=path, attempted=calls, succeeded=calls - failed,
        failed=failed, retransmissions=retransmissions, p50_ms=4.0, p99_ms=8.0,
        asterisk_cpu_s=1.0, engine_cpu_s=1.0, engine_ms_per_call=1.0,
        engine_net_ms_per_call=1.0, engine_rss_mb=100.0, asterisk_rss_mb=100.0,
        events_per_call=0.0, cdrs_written=calls,
    )  # fmt: skip


def test_a_path_that_failed_and_then_passed_again_is_clean_only_below_the_failure() -> None:
    steps = [step(400, "twin"), step(450, "twin", failed=3), step(500, "twin")]
    assert clean_limit(steps, "forward", "twin") == CleanLimit(400, open=False)


def test_retransmissions_count_only_for_the_quiet_measure() -> None:
    steps = [step(300, "agi"), step(350, "agi", retransmissions=20), step(400, "agi")]
    assert clean_limit(steps, "forward", "agi") == CleanLimit(400, open=True)
    assert clean_limit(steps, "forward", "agi", quiet=True) == CleanLimit(300, open=False)


def test_a_rate_run_twice_counts_only_if_both_runs_were_clean() -> None:
    steps = [step(200, "agi"), step(250, "agi"), step(200, "agi", failed=1)]
    assert clean_limit(steps, "forward", "agi") == CleanLimit(0, open=False)


def test_the_share_says_at_most_while_the_twin_was_clean_at_the_highest_rate() -> None:
    twin_open, twin_found = CleanLimit(400, open=True), CleanLimit(500, open=False)
    assert share_of_twin(CleanLimit(300, open=False), twin_open) == "at most 75% of the twin"
    assert share_of_twin(CleanLimit(400, open=True), twin_open).endswith(
        "100% of the twin, of the rates tried (both clean at the highest)"
    )
    assert share_of_twin(CleanLimit(450, open=False), twin_found) == "90% of the twin"
    assert "not clean" in share_of_twin(CleanLimit(0, open=False), CleanLimit(0, open=False))
    assert str(CleanLimit(400, open=True)) == "400/s (or more: clean at the highest rate tried)"
