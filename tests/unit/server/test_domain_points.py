"""Points rules."""

from datetime import date

import pytest

from server.domain.attendance import AttendanceStatus
from server.domain.points import (
    FIXED_PER_ACTIVITY_V1,
    ActivityRule,
    DurationCredit,
    PointsRules,
    RuleBook,
    RuleSet,
    RuleVersion,
    tap_time_points,
)


@pytest.mark.parametrize(
    ("status", "points"),
    [
        (AttendanceStatus.PRESENT, 2),
        (AttendanceStatus.LATE, 2),
        (AttendanceStatus.LEFT_EARLY, 0),
        (AttendanceStatus.ABSENT, 0),
        (AttendanceStatus.EXCUSED, 0),
    ],
)
def test_fixed_points_per_activity(status: AttendanceStatus, points: int) -> None:
    assert FIXED_PER_ACTIVITY_V1.points_for(2, status) == points


def test_rule_set_is_named() -> None:
    assert FIXED_PER_ACTIVITY_V1.version == "fixed-per-activity/1"


def test_other_rule_sets_choose_their_statuses() -> None:
    strict = PointsRules(RuleVersion("strict/1"), frozenset({AttendanceStatus.PRESENT}))

    assert strict.points_for(3, AttendanceStatus.LATE) == 0
    assert strict.points_for(3, AttendanceStatus.PRESENT) == 3


def test_negative_activity_points_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        FIXED_PER_ACTIVITY_V1.points_for(-1, AttendanceStatus.PRESENT)


# --------------------------------------------------------------------------- tap time


def _book() -> RuleBook:
    base = RuleSet(RuleVersion("base"), date(1970, 1, 1), {"theme_day": ActivityRule("org", 2, 2)})
    strict = RuleSet(
        RuleVersion("strict/2025"),
        date(2025, 3, 1),
        {
            "theme_day": ActivityRule("org", present=5, late=3),
            "study": ActivityRule("study", 1, 1, duration=DurationCredit(1, 20)),
        },
    )
    return RuleBook((base, strict))


@pytest.mark.parametrize(
    ("activity", "status", "day", "expected"),
    [
        ("theme_day", AttendanceStatus.PRESENT, date(2025, 2, 28), (2, "base")),
        ("theme_day", AttendanceStatus.LATE, date(2025, 2, 28), (2, "base")),
        ("theme_day", AttendanceStatus.PRESENT, date(2025, 3, 1), (5, "strict/2025")),
        ("theme_day", AttendanceStatus.LATE, date(2025, 3, 1), (3, "strict/2025")),
        # Duration credit is known only once the member checks out.
        ("study", AttendanceStatus.PRESENT, date(2025, 3, 1), (0, "strict/2025")),
        # No rule for the activity type and no default: nothing.
        ("unknown", AttendanceStatus.PRESENT, date(2025, 3, 1), (0, "strict/2025")),
    ],
)
def test_tap_time_points_follow_the_version_in_effect(
    activity: str, status: AttendanceStatus, day: date, expected: tuple[int, str]
) -> None:
    assert tap_time_points(_book(), activity, status, day) == expected
