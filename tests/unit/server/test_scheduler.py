"""The scheduler thread: passes at the injected clock's time, survives errors, stops cleanly."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from server.domain.clock import FixedClock
from server.services.scheduler import Pass, Scheduler

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


class Recorder:
    """A fake pass: records the time of each call, failing on the calls it is told to."""

    def __init__(self, clock: FixedClock, *, fail_on: frozenset[int] = frozenset()) -> None:
        self.clock = clock
        self.fail_on = fail_on
        self.seen: list[datetime] = []
        self.enough = threading.Event()

    def __call__(self, now: datetime) -> Pass:
        self.seen.append(now)
        # Each pass moves the fake clock a minute on, as time would between passes.
        self.clock.advance(timedelta(minutes=1))
        if len(self.seen) >= 3:
            self.enough.set()
        if len(self.seen) in self.fail_on:
            raise RuntimeError(f"pass {len(self.seen)} failed")
        return Pass(closed=[len(self.seen)])


def test_a_pass_reads_the_injected_clock() -> None:
    clock = FixedClock(NOW)
    work = Recorder(clock)
    scheduler = Scheduler(work, clock=clock, interval=timedelta(seconds=30))

    first = scheduler.run_once()
    second = scheduler.run_once()

    assert work.seen == [NOW, NOW + timedelta(minutes=1)]
    assert first == Pass(closed=[1])
    assert second == Pass(closed=[2])
    assert scheduler.last == second


def test_a_failing_pass_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FixedClock(NOW)
    work = Recorder(clock, fail_on=frozenset({1}))
    scheduler = Scheduler(work, clock=clock, interval=timedelta(milliseconds=5))

    scheduler.start()
    try:
        assert work.enough.wait(10)
    finally:
        scheduler.stop()

    assert not scheduler.running
    assert work.seen[:3] == [NOW + timedelta(minutes=n) for n in range(3)]
    assert scheduler.passes >= 3
    assert "pass 1 failed" in caplog.text
    assert scheduler.last is not None
    assert scheduler.last.closed != [1]


def test_the_first_pass_waits_one_interval_and_stop_does_not() -> None:
    clock = FixedClock(NOW)
    work = Recorder(clock)
    scheduler = Scheduler(work, clock=clock, interval=timedelta(hours=1))

    scheduler.start()
    assert scheduler.running
    scheduler.stop(timeout=5)
    scheduler.stop()  # a second stop is harmless

    assert not scheduler.running
    assert work.seen == []


def test_the_interval_must_be_positive() -> None:
    clock = FixedClock(NOW)
    with pytest.raises(ValueError, match="positive"):
        Scheduler(Recorder(clock), clock=clock, interval=timedelta(0))
