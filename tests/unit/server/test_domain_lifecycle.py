"""A session's status over time, and when it may still be edited."""

from datetime import UTC, datetime, timedelta

import pytest

from server.domain.lifecycle import SessionLife, SessionStatus
from server.errors import Conflict

START = datetime(2025, 3, 10, 6, 0, tzinfo=UTC)
END = START + timedelta(hours=2)
LIFE = SessionLife(START, END, checkin_open_minutes=30)


@pytest.mark.parametrize(
    ("now", "status"),
    [
        (START - timedelta(days=1), SessionStatus.PLANNED),
        (START - timedelta(minutes=1), SessionStatus.PLANNED),
        (START, SessionStatus.RUNNING),
        (END - timedelta(seconds=1), SessionStatus.RUNNING),
        (END, SessionStatus.ENDED),
    ],
)
def test_status_follows_the_clock(now: datetime, status: SessionStatus) -> None:
    assert LIFE.status(now) is status


def test_cancelled_and_closed_win_over_the_clock() -> None:
    before = START - timedelta(days=1)
    assert (
        SessionLife(START, END, 30, cancelled_at=before).status(before) is SessionStatus.CANCELLED
    )
    closed = SessionLife(START, END, 30, closed_at=END)
    assert closed.status(before) is SessionStatus.CLOSED
    both = SessionLife(START, END, 30, cancelled_at=before, closed_at=END)
    assert both.status(END) is SessionStatus.CANCELLED


def test_editable_only_before_check_in_opens() -> None:
    LIFE.check_editable(1, START - timedelta(minutes=31))
    with pytest.raises(Conflict, match="check-in opened"):
        LIFE.check_editable(1, START - timedelta(minutes=30))
    with pytest.raises(Conflict, match="running"):
        LIFE.check_editable(1, START)
    frozen = SessionLife(START, END, 30, roster_frozen_at=START)
    with pytest.raises(Conflict, match="roster is frozen"):
        frozen.check_editable(1, START - timedelta(days=1))
    cancelled = SessionLife(START, END, 30, cancelled_at=START - timedelta(days=2))
    with pytest.raises(Conflict, match="cancelled"):
        cancelled.check_editable(1, START - timedelta(days=1))
