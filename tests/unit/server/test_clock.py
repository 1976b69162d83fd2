"""Clocks."""

from datetime import UTC, datetime, timedelta

import pytest

from server.domain.clock import FixedClock, SystemClock


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()

    assert now.tzinfo is UTC


def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock(datetime(2025, 1, 1, tzinfo=UTC))
    clock.advance(timedelta(minutes=5))

    assert clock.now() == datetime(2025, 1, 1, 0, 5, tzinfo=UTC)


def test_fixed_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test
