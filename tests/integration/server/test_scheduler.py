"""The scheduler on both databases: rosters frozen at the start, sessions closed when due."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from server.db.engine import Database
from server.db.models import Attendance, AttendanceSession, Reader, SessionAudience, table_of
from server.domain.clock import FixedClock
from server.runtime import ServerRuntime
from server.sample import MinimalSeed, seed_minimal
from server.services.scheduler import Pass, run_due
from server.settings import load_settings

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")
GRACE = timedelta(minutes=90)
END = NOW + timedelta(hours=1)  # the seeded session's end


@pytest.fixture
def expected(database: Database, seeded: MinimalSeed) -> MinimalSeed:
    """The seeded session expects the seeded member's org unit."""
    with database.write_sessions.begin() as db:
        db.add(SessionAudience(session_id=seeded.session_id, org_unit_id=seeded.org_unit_id))
    return seeded


def _session(database: Database, session_id: int) -> AttendanceSession:
    with database.sessions() as db:
        found = db.get(AttendanceSession, session_id)
        assert found is not None
        return found


def test_passes_freeze_then_wait_then_close(database: Database, expected: MinimalSeed) -> None:
    sid = expected.session_id

    def at(moment: datetime) -> Pass:
        return run_due(database.write_sessions, moment, ZONE, GRACE)

    assert at(NOW - timedelta(minutes=1)) == Pass()
    assert at(NOW) == Pass(frozen=[sid])
    assert _session(database, sid).roster_frozen_at == NOW
    assert at(NOW + timedelta(minutes=5)) == Pass()
    # The reader has not reported an empty outbox: wait for it, up to the grace.
    assert at(END) == Pass(waiting=[sid])
    assert at(END + GRACE - timedelta(seconds=1)) == Pass(waiting=[sid])
    assert at(END + GRACE) == Pass(closed=[sid])
    assert _session(database, sid).closed_at == END + GRACE
    with database.sessions() as db:
        assert db.scalar(select(Attendance.status).where(Attendance.session_id == sid)) == "absent"
    assert at(END + GRACE + timedelta(hours=1)) == Pass()


def test_a_drained_reader_lets_the_session_close_at_once(
    database: Database, expected: MinimalSeed
) -> None:
    with database.write_sessions.begin() as db:
        db.execute(
            update(table_of(Reader))
            .where(Reader.reader_id == expected.reader_id)
            .values(last_status_at=END, outbox_depth=0)
        )
    assert run_due(database.write_sessions, END, ZONE, GRACE) == Pass(
        frozen=[expected.session_id], closed=[expected.session_id]
    )


def test_cancelled_sessions_are_left_alone(database: Database, expected: MinimalSeed) -> None:
    with database.write_sessions.begin() as db:
        db.execute(
            update(table_of(AttendanceSession))
            .where(AttendanceSession.id == expected.session_id)
            .values(cancelled_at=NOW, cancel_reason="typhoon")
        )
    assert run_due(database.write_sessions, END + GRACE, ZONE, GRACE) == Pass()
    assert _session(database, expected.session_id).roster_frozen_at is None


def test_serve_runs_the_scheduler_and_ingest_does_not(database_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        database_url=database_url,
        data_dir=tmp_path,
        mqtt_url="mqtt://127.0.0.1:1",
        scheduler_interval_seconds=0.05,
        absence_grace_minutes=30,
    )
    clock = FixedClock(NOW)
    with ServerRuntime(settings, clock=clock, ingest=False, scheduler=False) as quiet:
        seed = seed_minimal(quiet.database.write_sessions, NOW)
        assert quiet.scheduler is None
    off = settings.model_copy(update={"scheduler_enabled": False})
    with ServerRuntime(off, clock=clock, ingest=False) as disabled:
        assert disabled.scheduler is None

    clock.set(END + timedelta(minutes=30))
    with ServerRuntime(settings, clock=clock, ingest=False) as runtime:
        scheduler = runtime.scheduler
        assert scheduler is not None
        deadline = time.monotonic() + 10
        while _session(runtime.database, seed.session_id).closed_at is None:
            assert time.monotonic() < deadline, "the scheduler did not close the session"
            time.sleep(0.02)
        assert scheduler.running
    assert runtime.scheduler is None
    assert not scheduler.running
