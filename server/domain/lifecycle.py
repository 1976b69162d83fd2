"""A session's life: planned, running, ended, closed or cancelled; when it may be edited."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from server.errors import Conflict


class SessionStatus(StrEnum):
    """Where a session stands at a moment."""

    PLANNED = "planned"  # not started yet
    RUNNING = "running"  # between start and end
    ENDED = "ended"  # past its end, absences not decided yet
    CLOSED = "closed"  # absences decided, points settled
    CANCELLED = "cancelled"  # never scored


@dataclass(frozen=True)
class SessionLife:
    """The facts a session's status follows from."""

    starts_at: datetime
    ends_at: datetime
    checkin_open_minutes: int
    cancelled_at: datetime | None = None
    closed_at: datetime | None = None
    roster_frozen_at: datetime | None = None

    def status(self, now: datetime) -> SessionStatus:
        """The status at `now`; cancelled and closed win over the clock."""
        if self.cancelled_at is not None:
            return SessionStatus.CANCELLED
        if self.closed_at is not None:
            return SessionStatus.CLOSED
        if now < self.starts_at:
            return SessionStatus.PLANNED
        if now < self.ends_at:
            return SessionStatus.RUNNING
        return SessionStatus.ENDED

    def check_editable(self, session_id: int, now: datetime) -> None:
        """Conflict unless the session is planned and its check-in window has not opened.

        Once the window opens taps may already belong to the session, and its
        roster may be frozen: changing times or audience then would rewrite
        what readers answered, so a started session is corrected, not edited.
        """
        status = self.status(now)
        if status is not SessionStatus.PLANNED:
            raise Conflict(f"session {session_id} is {status.value}; only planned sessions change")
        opens_at = self.starts_at - timedelta(minutes=self.checkin_open_minutes)
        if now >= opens_at:
            raise Conflict(
                f"session {session_id}'s check-in opened at {opens_at.isoformat()}; "
                "it can no longer be edited"
            )
        if self.roster_frozen_at is not None:
            raise Conflict(f"session {session_id}'s roster is frozen; it can no longer be edited")
