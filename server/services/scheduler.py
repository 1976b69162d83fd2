"""The session scheduler: freezes rosters of sessions that have started, closes due ones.

`run_due` is the use case, one pass at a given time; `Scheduler` is the
background thread `rollcall serve` runs it on, every `interval` by an injected
clock. A session whose readers may still hold taps answers NotReady and is
simply tried again on a later pass; any other error is logged and the pass
goes on with the next session, so one bad session never stops the rest.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import AttendanceSession
from server.domain.clock import Clock
from server.errors import Conflict, NotFound, NotReady
from server.services import sessions
from server.services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class Pass:
    """What one pass did: rosters frozen, sessions closed, sessions still waiting, failures."""

    frozen: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _due(db: Session, now: datetime) -> tuple[list[int], list[int]]:
    """Open sessions whose roster is due to be frozen, and those whose window has closed."""
    live = (AttendanceSession.cancelled_at.is_(None), AttendanceSession.closed_at.is_(None))
    to_freeze = db.scalars(
        select(AttendanceSession.id)
        .where(
            *live,
            AttendanceSession.roster_frozen_at.is_(None),
            AttendanceSession.starts_at <= now,
        )
        .order_by(AttendanceSession.starts_at, AttendanceSession.id)
    ).all()
    to_close = db.scalars(
        select(AttendanceSession.id)
        .where(
            *live,
            or_(
                AttendanceSession.closes_at <= now,
                (AttendanceSession.closes_at.is_(None)) & (AttendanceSession.ends_at <= now),
            ),
        )
        .order_by(AttendanceSession.starts_at, AttendanceSession.id)
    ).all()
    return list(to_freeze), list(to_close)


def run_due(
    sessionmaker_: sessionmaker[Session], now: datetime, zone: tzinfo, grace: timedelta
) -> Pass:
    """Freeze every started session's roster and close every eligible session, as of `now`.

    Each session is handled in its own unit of work: a failure rolls back that
    session only.
    """
    done = Pass()
    with sessionmaker_() as db:
        to_freeze, to_close = _due(db, now)
    for session_id in to_freeze:
        try:
            sessions.freeze(UnitOfWork(sessionmaker_), session_id, zone)
            done.frozen.append(session_id)
        except (NotFound, Conflict):
            pass  # cancelled, closed or deleted since the query: nothing to do
        except Exception:
            log.exception("scheduler could not freeze the roster of session %d", session_id)
            done.failed.append(session_id)
    for session_id in to_close:
        try:
            sessions.close(UnitOfWork(sessionmaker_), session_id, now, zone, grace=grace)
            done.closed.append(session_id)
        except NotReady:
            done.waiting.append(session_id)
        except (NotFound, Conflict):
            pass  # closed by an administrator or cancelled since the query
        except Exception:
            log.exception("scheduler could not close session %d", session_id)
            done.failed.append(session_id)
    return done


class Scheduler:
    """Calls `work(now)` every `interval` on a background thread until stopped.

    The first pass comes one interval after start. Whatever `work` raises is
    logged, never propagated: the thread keeps going.
    """

    def __init__(
        self,
        work: Callable[[datetime], Pass],
        *,
        clock: Clock,
        interval: timedelta,
        name: str = "rollcall-scheduler",
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"the scheduler's interval must be positive ({interval})")
        self._work = work
        self._clock = clock
        self._interval = interval
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.last: Pass | None = None

    def start(self) -> None:
        """Start the background thread."""
        if self._thread is not None:
            raise RuntimeError("the scheduler is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait for the pass in progress to finish; safe to repeat."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("scheduler pass still running after %.0f s; leaving it", timeout)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def run_once(self) -> Pass | None:
        """One pass now, by the clock; None if it failed (the error is logged)."""
        try:
            done = self._work(self._clock.now())
        except Exception:
            log.exception("scheduler pass failed; trying again in %s", self._interval)
            return None
        finally:
            self.passes += 1
        self.last = done
        if done.frozen or done.closed:
            log.info(
                "scheduler froze rosters of %s, closed %s", done.frozen or "-", done.closed or "-"
            )
        return done

    def _run(self) -> None:
        while not self._stop.wait(self._interval.total_seconds()):
            self.run_once()
