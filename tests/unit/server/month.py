"""A small branch's month, in pure domain terms, shared by the domain tests.

Sessions (Asia/Shanghai times, all in March 2026):
- 1  主题党日, Fri 6 Mar 14:30–16:30, 支部 A (unit 2, with 党小组 unit 3 under it);
- 2  学习, Tue 10 Mar 19:00–21:00, check-out required, minimum stay 60 minutes,
     duration credit 1 point per 30 minutes, at most 4;
- 3, 4  党课 series 7: Thu 12 Mar 09:00–10:30 and the make-up Sat 14 Mar 19:00–20:30;
- 5  学习, Tue 10 Mar 21:00–22:00, the same day as session 2 (for the daily study cap).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from server.domain.attendance import (
    Audience,
    CheckinWindow,
    Marks,
    OrgTree,
    StayRule,
    TapFact,
    fold_taps,
)
from server.domain.closing import LeaveRequest, ReaderReport, decide_session
from server.domain.ledger import Ledger, reconcile
from server.domain.points import (
    ActivityRule,
    Caps,
    Credit,
    CreditKey,
    DurationCredit,
    RuleBook,
    RuleSet,
    RuleVersion,
    Scorable,
    score,
)
from server.domain.roster import Membership, freeze_roster

ZONE = ZoneInfo("Asia/Shanghai")
TREE = OrgTree({1: None, 2: 1, 3: 2, 4: 1})  # 委员会 1 → 支部 A (2) → 党小组 3; 支部 B (4)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in March 2026, Shanghai."""
    return datetime(2026, 3, day, hour, minute, tzinfo=ZONE)


@dataclass(frozen=True)
class Plan:
    """A session as the month plans it."""

    session_id: int
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    stay: StayRule = field(default_factory=StayRule)
    series_id: int | None = None
    audience: Audience = field(default_factory=lambda: Audience(org_unit_ids=frozenset({2})))

    @property
    def window(self) -> CheckinWindow:
        return CheckinWindow.for_session(
            self.starts_at, self.ends_at, open_minutes=30, late_grace_minutes=5
        )


STUDY_STAY = StayRule(requires_checkout=True, minimum_stay=timedelta(minutes=60))
PLANS = {
    1: Plan(1, "主题党日", local(6, 14, 30), local(6, 16, 30)),
    2: Plan(2, "学习", local(10, 19), local(10, 21), STUDY_STAY),
    3: Plan(3, "党课", local(12, 9), local(12, 10, 30), series_id=7),
    4: Plan(4, "党课", local(14, 19), local(14, 20, 30), series_id=7),
    5: Plan(5, "学习", local(10, 21), local(10, 22), STUDY_STAY),
}

V1 = RuleSet(
    version=RuleVersion("branch/2026-1"),
    effective_from=date(2026, 1, 1),
    activities={
        "主题党日": ActivityRule("organisational", present=3, late=2, absent=-2),
        "党课": ActivityRule("organisational", present=2, late=1, absent=-1),
        "学习": ActivityRule(
            "study", present=0, late=0, duration=DurationCredit(1, 30, max_points=4)
        ),
    },
    caps={"study": Caps(day=5, month=20, quarter=50), "organisational": Caps(month=12)},
)
BOOK = RuleBook((V1,))

# Members 11, 12, 13 in 党小组 3 (so in 支部 A); 14 in 支部 A until 9 March, then 支部 B.
MEMBERSHIPS = (
    Membership(11, 3, local(1, 0)),
    Membership(12, 3, local(1, 0)),
    Membership(13, 3, local(1, 0)),
    Membership(14, 2, local(1, 0), local(9, 0)),
    Membership(14, 4, local(9, 0)),
)


def roster(plan: Plan) -> frozenset[int]:
    return freeze_roster(plan.audience, MEMBERSHIPS, TREE, plan.starts_at)


def settle(
    taps: Iterable[TapFact],
    leaves: Iterable[LeaveRequest] = (),
    book: RuleBook = BOOK,
) -> tuple[dict[CreditKey, Scorable], dict[CreditKey, Credit]]:
    """Close every session after all readers drained; score the month."""
    marks = fold_taps(taps)
    leaves = list(leaves)
    scorables: dict[CreditKey, Scorable] = {}
    for plan in PLANS.values():
        per_member = {m: v for (m, s), v in marks.items() if s == plan.session_id}
        statuses = decide_session(
            window=plan.window,
            stay=plan.stay,
            roster=roster(plan),
            marks=per_member,
            leaves=[x for x in leaves if x.session_id == plan.session_id],
            readers=[ReaderReport("r1", plan.ends_at + timedelta(minutes=1), 0)],
            now=plan.ends_at + timedelta(minutes=2),
        )
        for member_id, status in statuses.items():
            scorables[(member_id, plan.session_id)] = Scorable(
                member_id=member_id,
                session_id=plan.session_id,
                activity_type=plan.activity_type,
                starts_at=plan.starts_at,
                ends_at=plan.ends_at,
                status=status,
                marks=per_member.get(member_id, Marks()),
                series_id=plan.series_id,
            )
    return scorables, score(scorables.values(), book, ZONE)


def ledger_for(credits: dict[CreditKey, Credit]) -> Ledger:
    """A fresh ledger holding exactly these credits."""
    empty = Ledger()
    return empty.append(reconcile(empty, credits, "month close"))
