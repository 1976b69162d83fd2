"""Closing a session: when absences may be decided, and every expected member's status.

Absences are decided only after the session's window has closed and every
reader in its rooms has reported an empty outbox since then, or a grace period
has passed: a reader that was offline cannot cause false absences, because its
taps are still on the way.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from server.domain.attendance import AttendanceStatus, CheckinWindow, Marks, StayRule, status_of
from server.errors import NotReady

DEFAULT_READER_GRACE = timedelta(hours=2)


@dataclass(frozen=True)
class ReaderReport:
    """The latest status a reader of the session's rooms sent."""

    reader_id: str
    reported_at: datetime | None
    outbox_depth: int | None


class LeaveStatus(StrEnum):
    """Where a leave request (请假) stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class LeaveRequest:
    """A member's request to be excused from a session; only an approved one excuses."""

    member_id: int
    session_id: int
    status: LeaveStatus
    approver: str | None = None

    @property
    def excuses(self) -> bool:
        """Whether this request makes an absence an excused one."""
        return self.status is LeaveStatus.APPROVED and bool(self.approver)


def readers_drained(closes_at: datetime, readers: Iterable[ReaderReport]) -> bool:
    """Whether every reader has reported an empty outbox at or after the window closed."""
    return all(
        r.reported_at is not None and r.reported_at >= closes_at and r.outbox_depth == 0
        for r in readers
    )


def absences_decidable(
    closes_at: datetime,
    readers: Iterable[ReaderReport],
    now: datetime,
    grace: timedelta = DEFAULT_READER_GRACE,
) -> bool:
    """Whether a session's absences may be decided at `now`."""
    if now < closes_at:
        return False
    return now >= closes_at + grace or readers_drained(closes_at, readers)


def why_not_decidable(
    closes_at: datetime, readers: Iterable[ReaderReport], now: datetime, grace: timedelta
) -> str:
    """A sentence for people on why a session cannot be closed yet."""
    if now < closes_at:
        return f"the check-in window is open until {closes_at.isoformat()}"
    waiting = sorted(
        r.reader_id
        for r in readers
        if r.reported_at is None or r.reported_at < closes_at or r.outbox_depth != 0
    )
    return (
        f"readers {', '.join(waiting)} have not reported an empty outbox since the window "
        f"closed; wait for them or until {(closes_at + grace).isoformat()}"
    )


def decide_session(
    *,
    window: CheckinWindow,
    stay: StayRule,
    roster: frozenset[int],
    marks: Mapping[int, Marks],
    leaves: Iterable[LeaveRequest],
    readers: Iterable[ReaderReport],
    now: datetime,
    grace: timedelta = DEFAULT_READER_GRACE,
) -> dict[int, AttendanceStatus]:
    """Every final status of a closed session: attendees (expected or walk-in) and absentees.

    A member who came despite approved leave counts as attending. Raises
    NotReady while absences cannot be decided yet.
    """
    readers = list(readers)
    if not absences_decidable(window.closes_at, readers, now, grace):
        raise NotReady(why_not_decidable(window.closes_at, readers, now, grace))
    excused = {leave.member_id for leave in leaves if leave.excuses}
    statuses: dict[int, AttendanceStatus] = {}
    for member_id, member_marks in marks.items():
        status = status_of(window, member_marks, stay, final=True)
        if status is not None:
            statuses[member_id] = status
    for member_id in roster:
        if member_id not in statuses:
            statuses[member_id] = (
                AttendanceStatus.EXCUSED if member_id in excused else AttendanceStatus.ABSENT
            )
    return statuses
