"""clock_offset_seconds: a staged wrong clock moves the taps' times, and nothing else changes."""

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reader_agent.agent import Agent, RunOutcome
from reader_agent.clock import OffsetClock, SystemClock
from reader_agent.config import load_settings
from reader_agent.errors import ConfigError
from reader_agent.outbox import Outbox
from reader_agent.sources.simulated import SimulatedSource
from tests.unit.reader_agent.fakes import FakeTransport, RecordingFeedback, acking_server


def test_offset_clock_moves_wall_time_but_not_monotonic_time() -> None:
    base = SystemClock()
    clock = OffsetClock(base, timedelta(hours=-1))
    assert clock.now() - base.now() == pytest.approx(timedelta(hours=-1), abs=timedelta(seconds=1))
    assert abs(clock.monotonic() - base.monotonic()) < 1.0


@pytest.mark.parametrize("offset", [3600.0, -3600.0, 0.0])
def test_taps_are_stamped_by_the_offset_clock(tmp_path: Path, offset: float) -> None:
    settings = load_settings(None, id="door-1", clock_synced=False, clock_offset_seconds=offset)
    transport = FakeTransport(responder=acking_server())
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        agent = Agent(
            settings,
            SimulatedSource(["04A1B2C3"]),
            RecordingFeedback(),
            outbox=outbox,
            transport=transport,
        )
        before = datetime.now(UTC)
        outcome = agent.run(threading.Event(), exit_when_drained=True, drain_timeout=5)
        after = datetime.now(UTC)
    finally:
        outbox.close()
    assert outcome is RunOutcome.DRAINED
    [tap] = transport.taps()
    shift = timedelta(seconds=offset)
    assert before + shift <= tap.occurred_at <= after + shift
    assert tap.clock_synced is False


@pytest.mark.parametrize("value", ["nan", "inf", "an hour"])
def test_offset_must_be_a_finite_number_of_seconds(value: str) -> None:
    with pytest.raises(ConfigError, match="clock_offset_seconds"):
        load_settings(None, id="door-1", clock_offset_seconds=value)
