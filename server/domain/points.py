"""Points rules: what an attendance is worth, under a named, versioned rule set.

Every ledger entry records the RuleVersion that produced it, so figures can be
explained and recomputed after the rules change. For now one rule set exists:
the activity type's fixed points for present or late attendance, nothing else.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

from server.domain.attendance import AttendanceStatus

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
