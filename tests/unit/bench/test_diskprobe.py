"""The disk probe's arithmetic (bench.diskprobe): phase windows and taps across a stall."""

import math

from bench.diskprobe import Sample, summary, taps_across_stalls

# A quiet disk with two stalls: 40 ms from t=1.000, 12 ms from t=2.000.
SAMPLES = [
    Sample(0.0, 0.0003),
    Sample(0.5, 0.0002),
    Sample(1.0, 0.040),
    Sample(1.5, 0.0004),
    Sample(2.0, 0.012),
    Sample(2.5, 0.0002),
]


def test_summary_counts_only_the_calls_begun_in_the_window() -> None:
    whole = summary(SAMPLES)
    assert whole["fsyncs"] == 6
    assert whole["max_ms"] == 40.0
    assert whole["stalls_over_10ms"] == 2
    assert math.isclose(whole["stalled_ms"], 52.0)
    assert math.isclose(whole["p50_ms"], 0.3)

    late = summary(SAMPLES, 1.2, 3.0)
    assert late["fsyncs"] == 3
    assert late["max_ms"] == 12.0
    assert late["stalls_over_10ms"] == 1


def test_summary_of_an_empty_window_is_nan_not_an_error() -> None:
    empty = summary(SAMPLES, 10.0, 11.0)
    assert empty["fsyncs"] == 0
    assert math.isnan(empty["max_ms"])
    assert empty["stalls_over_10ms"] == 0


def test_a_slow_tap_counts_as_across_a_stall_only_if_in_flight_during_one() -> None:
    due = [
        1.010,  # in flight during the first stall, answered in 35 ms: across
        1.200,  # slow (20 ms) but nowhere near a stall
        0.990,  # due just before the first stall, answered at 1.045: across
        2.005,  # fast (5 ms) during the second stall: not slow, not counted
        2.011,  # due 1 ms before the second stall ended, answered 15 ms later: across
        3.000,  # never answered: not counted at all
    ]
    acked = [1.045, 1.220, 1.045, 2.010, 2.026, math.nan]
    assert taps_across_stalls(SAMPLES, due, acked) == {
        "slow_taps": 4,
        "slow_taps_across_a_stall": 3,
    }


def test_a_tap_answered_before_a_stall_began_is_not_across_it() -> None:
    assert taps_across_stalls(SAMPLES, [0.950], [0.999]) == {
        "slow_taps": 1,
        "slow_taps_across_a_stall": 0,
    }
