"""Check-in windows, audiences and tap resolution: which session a tap belongs to.

A session's check-in window opens `open_minutes` before its start, counts taps as
late after start + grace, and closes at its end or at a set time. A tap at
exactly the opening instant counts; a tap at exactly the closing instant does not
(the window is half-open, so back-to-back sessions never both claim a tap by
their boundaries alone). A tap at exactly start + grace is still on time.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from server.errors import InvalidWindow

# The longest a check-in window may open before its session starts; storage
# uses it to bound the sessions it loads for a tap, so it is a rule, not a guess.
MAX_OPEN_BEFORE = timedelta(hours=24)


class AttendanceStatus(StrEnum):
    """How a member attended a session."""

    PRESENT = "present"
    LATE = "late"
    LEFT_EARLY = "left_early"
    ABSENT = "absent"
    EXCUSED = "excused"


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidWindow(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value


@dataclass(frozen=True)
class CheckinWindow:
    """When taps count for a session: [opens_at, closes_at), late after late_after."""

    opens_at: datetime
    late_after: datetime
    closes_at: datetime

    def __post_init__(self) -> None:
        for name in ("opens_at", "late_after", "closes_at"):
            _aware(name, getattr(self, name))
        if self.closes_at <= self.opens_at:
            raise InvalidWindow(
                f"check-in window closes ({self.closes_at.isoformat()}) "
                f"before it opens ({self.opens_at.isoformat()})"
            )

    @classmethod
    def for_session(
        cls,
        starts_at: datetime,
        ends_at: datetime,
        *,
        open_minutes: int,
        late_grace_minutes: int,
        closes_at: datetime | None = None,
    ) -> "CheckinWindow":
        """Build the window of a session from its times and check-in settings."""
        _aware("starts_at", starts_at)
        _aware("ends_at", ends_at)
        if ends_at <= starts_at:
            raise InvalidWindow(
                f"session ends ({ends_at.isoformat()}) before it starts ({starts_at.isoformat()})"
            )
        opens_before = timedelta(minutes=open_minutes)
        if not timedelta(0) <= opens_before <= MAX_OPEN_BEFORE:
            raise InvalidWindow(f"check-in may open 0 to 1440 minutes early, not {open_minutes}")
        if late_grace_minutes < 0:
            raise InvalidWindow(f"late grace cannot be negative ({late_grace_minutes} minutes)")
        return cls(
            opens_at=starts_at - opens_before,
            late_after=starts_at + timedelta(minutes=late_grace_minutes),
            closes_at=ends_at if closes_at is None else closes_at,
        )

    def covers(self, at: datetime) -> bool:
        """Whether a tap at `at` falls inside the window."""
        return self.opens_at <= _aware("tap time", at) < self.closes_at

    def status_at(self, at: datetime) -> AttendanceStatus:
        """Present up to and including start + grace, late after that."""
        if _aware("tap time", at) > self.late_after:
            return AttendanceStatus.LATE
        return AttendanceStatus.PRESENT


@dataclass(frozen=True)
class OrgTree:
    """The organisation as child → parent links, for audience checks."""

    parents: Mapping[int, int | None]

    def path_to_root(self, unit_id: int) -> tuple[int, ...]:
        """The unit and its ancestors, nearest first; stops safely on a cycle."""
        path: list[int] = []
        current: int | None = unit_id
        while current is not None and current not in path:
            path.append(current)
            current = self.parents.get(current)
        return tuple(path)

    def subtree(self, unit_id: int) -> frozenset[int]:
        """The unit and every unit below it, at any depth."""
        return frozenset(u for u in self.parents if unit_id in self.path_to_root(u))


@dataclass(frozen=True)
class Audience:
    """Who a session is for: org units (with their sub-units) and listed members.

    An empty audience means the session is open to everyone.
    """

    org_unit_ids: frozenset[int] = frozenset()
    member_ids: frozenset[int] = frozenset()

    @property
    def is_open(self) -> bool:
        """Whether the session has no audience restriction."""
        return not self.org_unit_ids and not self.member_ids

    def includes(self, member_id: int, org_unit_path: Sequence[int]) -> bool:
        """Whether a member, in the unit path given (unit first, then ancestors), is expected."""
        if self.is_open or member_id in self.member_ids:
            return True
        return any(unit in self.org_unit_ids for unit in org_unit_path)


@dataclass(frozen=True)
class SessionCandidate:
    """A session a tap in its room might belong to, with what resolution needs."""

    session_id: int
    title: str
    activity_type: str
    starts_at: datetime
    window: CheckinWindow
    allow_walk_in: bool = True
    audience: Audience = Audience()


@dataclass(frozen=True)
class Resolution:
    """The session a tap resolved to, and whether the member is in its audience."""

    session: SessionCandidate
    expected: bool

    @property
    def credited(self) -> bool:
        """Whether a check-in here may create attendance and points."""
        return self.expected or self.session.allow_walk_in


def resolve_session(
    candidates: Iterable[SessionCandidate],
    at: datetime,
    is_expected: Callable[[SessionCandidate], bool] = lambda _: True,
) -> Resolution | None:
    """Pick the session a tap at `at` belongs to, or None if no window covers it.

    Among open windows the session starting nearest to the tap wins (someone
    tapping ten minutes before the next meeting is arriving for it, not fifty
    minutes late for the current one); ties go to the earlier start, then the
    lower id, so the answer never depends on input order. A session whose
    audience includes the member beats one that does not.
    """
    _aware("tap time", at)
    open_now = sorted(
        (c for c in candidates if c.window.covers(at)),
        key=lambda c: (abs(c.starts_at - at), c.starts_at, c.session_id),
    )
    if not open_now:
        return None
    for candidate in open_now:
        if is_expected(candidate):
            return Resolution(candidate, expected=True)
    return Resolution(open_now[0], expected=False)


# --------------------------------------------------------------------------- marks and statuses


class TapKind(StrEnum):
    """What a tap on a session says: arriving or leaving."""

    CHECKIN = "checkin"
    CHECKOUT = "checkout"


@dataclass(frozen=True)
class TapFact:
    """A tap already resolved to a member and a session."""

    event_id: str
    member_id: int
    session_id: int
    kind: TapKind
    at: datetime


@dataclass(frozen=True)
class Marks:
    """What a member's taps on one session established: arrival and departure."""

    checked_in_at: datetime | None = None
    checked_out_at: datetime | None = None

    def merge(self, other: "Marks") -> "Marks":
        """Combine two sets of marks: the earliest arrival, the latest departure after it.

        The merge is commutative, associative and idempotent, so taps folded in
        any order, with any repeats, give the same marks: a tap an offline reader
        delivers an hour late counts exactly as if it had come on time.
        """
        arrivals = [t for t in (self.checked_in_at, other.checked_in_at) if t is not None]
        departures = [t for t in (self.checked_out_at, other.checked_out_at) if t is not None]
        arrived = min(arrivals) if arrivals else None
        left = max(departures) if departures else None
        return Marks(arrived, left)

    def settled(self) -> "Marks":
        """The marks as they count: a departure before the arrival is no departure."""
        if self.checked_in_at is None:
            return Marks(None, None)
        if self.checked_out_at is not None and self.checked_out_at < self.checked_in_at:
            return Marks(self.checked_in_at, None)
        return self

    @property
    def stay(self) -> timedelta | None:
        """Time between arrival and departure, when both are known."""
        settled = self.settled()
        if settled.checked_in_at is None or settled.checked_out_at is None:
            return None
        return settled.checked_out_at - settled.checked_in_at


def fold_taps(taps: Iterable[TapFact]) -> dict[tuple[int, int], Marks]:
    """Marks per (member, session) from resolved taps, independent of order and repeats."""
    marks: dict[tuple[int, int], Marks] = {}
    for tap in taps:
        key = (tap.member_id, tap.session_id)
        _aware("tap time", tap.at)
        one = Marks(tap.at, None) if tap.kind is TapKind.CHECKIN else Marks(None, tap.at)
        marks[key] = marks.get(key, Marks()).merge(one)
    return {key: value.settled() for key, value in marks.items()}


@dataclass(frozen=True)
class StayRule:
    """Check-out settings of a session: whether leaving must be tapped, and the minimum stay."""

    requires_checkout: bool = False
    minimum_stay: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.minimum_stay < timedelta(0):
            raise InvalidWindow(f"minimum stay cannot be negative ({self.minimum_stay})")


def status_of(
    window: CheckinWindow, marks: Marks, stay: StayRule = StayRule(), *, final: bool = False
) -> AttendanceStatus | None:
    """A member's status from their marks, or None when they never checked in.

    Left early: a check-out before the minimum stay, or, once the session is
    final, no check-out at all where one is required (study credits only with
    both taps). Otherwise present or late by the arrival time.
    """
    settled = marks.settled()
    if settled.checked_in_at is None:
        return None
    length = settled.stay
    if length is not None and length < stay.minimum_stay:
        return AttendanceStatus.LEFT_EARLY
    if final and stay.requires_checkout and length is None:
        return AttendanceStatus.LEFT_EARLY
    return window.status_at(settled.checked_in_at)


STATUS_PREFERENCE: tuple[AttendanceStatus, ...] = (
    AttendanceStatus.PRESENT,
    AttendanceStatus.LATE,
    AttendanceStatus.LEFT_EARLY,
    AttendanceStatus.EXCUSED,
    AttendanceStatus.ABSENT,
)
"""Best first: how occurrences of a series compare when any one fulfils it."""


def better(a: AttendanceStatus, b: AttendanceStatus) -> bool:
    """Whether status `a` fulfils a series strictly better than `b`."""
    return STATUS_PREFERENCE.index(a) < STATUS_PREFERENCE.index(b)
