"""Points rules."""

import pytest

from server.domain.attendance import AttendanceStatus
from server.domain.points import FIXED_PER_ACTIVITY_V1, PointsRules, RuleVersion


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
