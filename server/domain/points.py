"""Points rules: what an attendance is worth, under a named, versioned rule set.

Every ledger entry records the RuleVersion that produced it, so figures can be
explained and recomputed after the rules change.

Two kinds of rule set live here. `PointsRules` is the tap-time rule: the
activity type's fixed points for present or late attendance, answered on the
reader at once. `RuleSet` is the full rule: points per activity type and
status (late and absence values included), duration-based credit for study,
and caps per category per day, month and quarter; a `RuleBook` holds the
versions with their effective dates, and `score` turns settled attendance into
the credits the ledger should hold.

A cap's category is an activity category (study, meeting …: the `category` of
an activity type), not a member category (正式党员, 预备党员 …): caps limit what
one kind of activity may earn, whoever the member is.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import NewType

from server.domain.attendance import AttendanceStatus, Marks, better
from server.errors import InvalidRule

RuleVersion = NewType("RuleVersion", str)


class LedgerSource(StrEnum):
    """Why a ledger entry exists."""

    ATTENDANCE = "attendance"
    ADJUSTMENT = "adjustment"
    REVERSAL = "reversal"


@dataclass(frozen=True)
class PointsRules:
    """A rule set: its version and the statuses that earn an activity's points."""

    version: RuleVersion
    credited_statuses: frozenset[AttendanceStatus] = frozenset(
        {AttendanceStatus.PRESENT, AttendanceStatus.LATE}
    )

    def points_for(self, activity_points: int, status: AttendanceStatus) -> int:
        """Points an attendance earns for an activity worth `activity_points`."""
        if activity_points < 0:
            raise ValueError(f"activity points cannot be negative ({activity_points})")
        return activity_points if status in self.credited_statuses else 0


FIXED_PER_ACTIVITY_V1 = PointsRules(version=RuleVersion("fixed-per-activity/1"))
"""Fixed points per activity type, the same for present and late."""


# --------------------------------------------------------------------------- versioned rules


@dataclass(frozen=True)
class Caps:
    """The most a member may earn in one category per local day, month and quarter."""

    day: int | None = None
    month: int | None = None
    quarter: int | None = None

    def __post_init__(self) -> None:
        for name in ("day", "month", "quarter"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidRule(f"a {name} cap cannot be negative ({value})")


@dataclass(frozen=True)
class DurationCredit:
    """Study credit by time spent: `points` per full `minutes`, at most `max_points`."""

    points: int
    minutes: int
    max_points: int | None = None

    def __post_init__(self) -> None:
        if self.minutes <= 0 or self.points < 0:
            raise InvalidRule(f"duration credit needs positive minutes and points ({self})")

    def credit(self, stay: timedelta) -> int:
        """Points for a stay of `stay`."""
        earned = int(stay // timedelta(minutes=self.minutes)) * self.points
        return earned if self.max_points is None else min(earned, self.max_points)


@dataclass(frozen=True)
class ActivityRule:
    """What each status is worth for one activity type, and its cap category."""

    category: str
    present: int
    late: int
    left_early: int = 0
    absent: int = 0
    excused: int = 0
    duration: DurationCredit | None = None

    def value(self, status: AttendanceStatus) -> int:
        """The fixed value of a status (duration credit aside)."""
        return {
            AttendanceStatus.PRESENT: self.present,
            AttendanceStatus.LATE: self.late,
            AttendanceStatus.LEFT_EARLY: self.left_early,
            AttendanceStatus.ABSENT: self.absent,
            AttendanceStatus.EXCUSED: self.excused,
        }[status]


@dataclass(frozen=True)
class RuleSet:
    """One version of the points rules, in effect from `effective_from` (a local date)."""

    version: RuleVersion
    effective_from: date
    activities: Mapping[str, ActivityRule]
    default: ActivityRule | None = None
    caps: Mapping[str, Caps] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.version:
            raise InvalidRule("a rule set needs a version name")

    def rule_for(self, activity_type: str) -> ActivityRule | None:
        """The rule of an activity type (its code), or the default rule."""
        return self.activities.get(activity_type, self.default)

    def caps_for(self, category: str) -> Caps:
        """The caps of a category; no entry means no cap."""
        return self.caps.get(category, Caps())


@dataclass(frozen=True)
class RuleBook:
    """All rule versions; the one in effect on a day is the latest that has started."""

    versions: tuple[RuleSet, ...]

    def __post_init__(self) -> None:
        names = [v.version for v in self.versions]
        days = [v.effective_from for v in self.versions]
        if len(set(names)) != len(names):
            raise InvalidRule(f"rule versions must be unique: {names}")
        if len(set(days)) != len(days):
            raise InvalidRule(f"two rule versions take effect on the same day: {days}")
        object.__setattr__(
            self, "versions", tuple(sorted(self.versions, key=lambda v: v.effective_from))
        )

    def in_effect(self, day: date) -> RuleSet:
        """The rule set in effect on `day`; InvalidRule if none has started."""
        chosen: RuleSet | None = None
        for version in self.versions:
            if version.effective_from <= day:
                chosen = version
        if chosen is None:
            raise InvalidRule(f"no points rule version is in effect on {day.isoformat()}")
        return chosen

    def with_version(self, rules: RuleSet) -> "RuleBook":
        """This book plus one more version."""
        return RuleBook((*self.versions, rules))


def tap_time_points(
    book: RuleBook, activity_type: str, status: AttendanceStatus, day: date
) -> tuple[int, RuleVersion]:
    """What a check-in is worth when the reader answers, under the version in effect on `day`.

    The fixed value of the status for the session's activity type; a rule with
    duration credit earns nothing yet (the stay is known only at check-out), and
    caps wait for closing, which settles the ledger to the full score.
    """
    rules = book.in_effect(day)
    rule = rules.rule_for(activity_type)
    if rule is None or rule.duration is not None:
        return 0, rules.version
    return rule.value(status), rules.version


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scorable:
    """A settled attendance (or absence) ready to be scored."""

    member_id: int
    session_id: int
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    status: AttendanceStatus
    marks: Marks = field(default_factory=Marks)
    series_id: int | None = None


@dataclass(frozen=True)
class Credit:
    """What the ledger should hold for one attendance: amount after caps, and why."""

    member_id: int
    session_id: int
    amount: int
    rule_version: RuleVersion
    category: str
    uncapped: int


CreditKey = tuple[int, int]
"""(member_id, session_id): the attendance an attendance credit belongs to."""


def _fulfilments(attendances: Iterable[Scorable], open_series: frozenset[int]) -> list[Scorable]:
    """One attendance per member per series (the best), each lone session as itself.

    A series whose occurrences are not all closed scores no absence yet: the
    member may still attend a make-up occurrence.
    """
    best: dict[tuple[int, str, int], Scorable] = {}
    for a in attendances:
        key = (
            (a.member_id, "series", a.series_id)
            if a.series_id is not None
            else (a.member_id, "session", a.session_id)
        )
        held = best.get(key)
        if (
            held is None
            or better(a.status, held.status)
            or (
                a.status is held.status
                and (a.starts_at, a.session_id) < (held.starts_at, held.session_id)
            )
        ):
            best[key] = a
    return [
        a
        for a in best.values()
        if not (
            a.series_id in open_series
            and a.status in (AttendanceStatus.ABSENT, AttendanceStatus.EXCUSED)
        )
    ]


def _quarter(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3


def raw_points(rule: ActivityRule, attendance: Scorable) -> int:
    """An attendance's points under one activity rule, before caps.

    With duration credit, present and late earn by the time between check-in
    and check-out, counted within the session's own times; no check-out, no credit.
    """
    status = attendance.status
    if rule.duration is None or status not in (AttendanceStatus.PRESENT, AttendanceStatus.LATE):
        return rule.value(status)
    marks = attendance.marks.settled()
    if marks.checked_in_at is None or marks.checked_out_at is None:
        return 0
    start = max(marks.checked_in_at, attendance.starts_at)
    end = min(marks.checked_out_at, attendance.ends_at)
    return rule.duration.credit(max(end - start, timedelta(0)))


def score(
    attendances: Iterable[Scorable],
    book: RuleBook,
    zone: tzinfo,
    *,
    open_series: frozenset[int] = frozenset(),
) -> dict[CreditKey, Credit]:
    """The attendance credits the ledger should hold, keyed by (member, session).

    Each attendance is scored by the version in effect on its session's local
    date. Caps apply to earnings (positive amounts) per member and category,
    filled in session order (start, then id), so the result depends only on
    the attendances, never on the order they are given in. Zero credits are left out.
    """
    chosen = sorted(
        _fulfilments(attendances, open_series),
        key=lambda a: (a.starts_at, a.session_id, a.member_id),
    )
    earned: dict[tuple[int, str, object], int] = {}
    credits: dict[CreditKey, Credit] = {}
    for a in chosen:
        day = a.starts_at.astimezone(zone).date()
        rules = book.in_effect(day)
        rule = rules.rule_for(a.activity_type)
        if rule is None:
            continue
        uncapped = raw_points(rule, a)
        amount = uncapped
        if amount > 0:
            caps = rules.caps_for(rule.category)
            buckets: list[tuple[tuple[int, str, object], int | None]] = [
                ((a.member_id, rule.category, ("d", day)), caps.day),
                ((a.member_id, rule.category, ("m", day.year, day.month)), caps.month),
                ((a.member_id, rule.category, ("q", _quarter(day))), caps.quarter),
            ]
            for bucket, cap in buckets:
                if cap is not None:
                    amount = min(amount, max(cap - earned.get(bucket, 0), 0))
            for bucket, _ in buckets:
                earned[bucket] = earned.get(bucket, 0) + amount
        if amount != 0:
            credits[(a.member_id, a.session_id)] = Credit(
                a.member_id, a.session_id, amount, rules.version, rule.category, uncapped
            )
    return credits
