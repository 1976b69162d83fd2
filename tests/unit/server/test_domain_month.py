"""A branch secretary's March, told session by session, checked against the domain rules."""

from datetime import timedelta

import pytest

from server.domain.attendance import AttendanceStatus, TapFact, TapKind
from server.domain.closing import (
    LeaveRequest,
    LeaveStatus,
    ReaderReport,
    absences_decidable,
    decide_session,
)
from server.domain.ledger import reconcile, reversal_of
from server.domain.points import LedgerSource
from server.errors import LedgerError, NotReady
from tests.unit.server.month import PLANS, ledger_for, local, roster, settle

IN, OUT = TapKind.CHECKIN, TapKind.CHECKOUT


def tap(n: int, member: int, session: int, at: object, kind: TapKind = IN) -> TapFact:
    assert not isinstance(at, int)
    return TapFact(f"e{n}", member, session, kind, at)  # type: ignore[arg-type]


def test_theme_day_with_a_late_arrival_and_an_excused_absence() -> None:
    """主题党日 on the first Friday: 11 on time, 12 twenty minutes late, 13 on approved leave."""
    taps = [tap(1, 11, 1, local(6, 14, 20)), tap(2, 12, 1, local(6, 14, 50))]
    leave = LeaveRequest(13, 1, LeaveStatus.APPROVED, approver="书记 王")

    scorables, credits = settle(taps, [leave])

    assert scorables[(11, 1)].status is AttendanceStatus.PRESENT
    assert scorables[(12, 1)].status is AttendanceStatus.LATE
    assert scorables[(13, 1)].status is AttendanceStatus.EXCUSED
    assert credits[(11, 1)].amount == 3
    assert credits[(12, 1)].amount == 2
    assert (13, 1) not in credits  # excused: no penalty


def test_unapproved_leave_is_an_absence() -> None:
    leave = LeaveRequest(13, 1, LeaveStatus.PENDING, approver=None)

    scorables, credits = settle([tap(1, 11, 1, local(6, 14, 20))], [leave])

    assert scorables[(13, 1)].status is AttendanceStatus.ABSENT
    assert credits[(13, 1)].amount == -2


def test_study_session_with_check_out_before_the_minimum_stay() -> None:
    """学习 needs both taps and an hour: 11 stays 90 min, 12 leaves after 40, 13 never taps out."""
    taps = [
        tap(1, 11, 2, local(10, 19)),
        tap(2, 11, 2, local(10, 20, 30), OUT),
        tap(3, 12, 2, local(10, 19)),
        tap(4, 12, 2, local(10, 19, 40), OUT),
        tap(5, 13, 2, local(10, 19)),
    ]

    scorables, credits = settle(taps)

    assert scorables[(11, 2)].status is AttendanceStatus.PRESENT
    assert credits[(11, 2)].amount == 3  # 90 minutes, 1 point per 30
    assert scorables[(12, 2)].status is AttendanceStatus.LEFT_EARLY
    assert scorables[(13, 2)].status is AttendanceStatus.LEFT_EARLY
    assert (12, 2) not in credits
    assert (13, 2) not in credits


def test_the_daily_study_cap_holds_across_two_sessions() -> None:
    """Two hours then an hour of study on one day: 4 + 2 earned, capped at 5."""
    taps = [
        tap(1, 11, 2, local(10, 19)),
        tap(2, 11, 2, local(10, 21), OUT),
        tap(3, 11, 5, local(10, 21)),
        tap(4, 11, 5, local(10, 22), OUT),
    ]

    _, credits = settle(taps)

    assert credits[(11, 2)].amount == 4
    assert credits[(11, 5)].amount == 1
    assert credits[(11, 5)].uncapped == 2


def test_shift_worker_attends_the_make_up_session() -> None:
    """党课 series: 12 works Thursday's shift and attends Saturday's make-up; 13 attends neither."""
    taps = [tap(1, 11, 3, local(12, 9)), tap(2, 12, 4, local(14, 19))]

    scorables, credits = settle(taps)

    assert scorables[(12, 3)].status is AttendanceStatus.ABSENT  # the fact stays recorded
    assert credits[(12, 4)].amount == 2
    assert (12, 3) not in credits  # fulfilled by the make-up: no penalty
    assert credits[(11, 3)].amount == 2
    assert (11, 4) not in credits  # nothing for the make-up 11 did not need
    assert sum(c.amount for (m, _), c in credits.items() if m == 13 and _ in (3, 4)) == -1


def test_member_who_moves_branch_mid_month() -> None:
    """14 moves from 支部 A on 9 March: expected on the 6th (主题党日), not the 10th (学习)."""
    assert 14 in roster(PLANS[1])
    assert 14 not in roster(PLANS[2])

    scorables, credits = settle([])

    assert scorables[(14, 1)].status is AttendanceStatus.ABSENT
    assert (14, 2) not in scorables
    assert credits[(14, 1)].amount == -2


def test_reader_offline_during_a_session_whose_taps_arrive_an_hour_later() -> None:
    """The reader was offline; its taps (made on time) arrive an hour after the end."""
    plan = PLANS[1]
    closes = plan.window.closes_at
    silent = [ReaderReport("hall-door", closes - timedelta(hours=1), 3)]

    assert not absences_decidable(closes, silent, closes + timedelta(minutes=30))
    with pytest.raises(NotReady, match="hall-door"):
        decide_session(
            window=plan.window,
            stay=plan.stay,
            roster=roster(plan),
            marks={},
            leaves=[],
            readers=silent,
            now=closes + timedelta(minutes=30),
        )

    late_delivery = [tap(1, 11, 1, local(6, 14, 25)), tap(2, 12, 1, local(6, 14, 31))]
    back = [ReaderReport("hall-door", closes + timedelta(hours=1), 0)]
    assert absences_decidable(closes, back, closes + timedelta(hours=1))
    scorables, _ = settle(late_delivery)
    on_time, _ = settle(list(reversed(late_delivery)))
    assert scorables == on_time
    assert scorables[(11, 1)].status is AttendanceStatus.PRESENT
    assert scorables[(12, 1)].status is AttendanceStatus.PRESENT  # within 5 minutes' grace


def test_grace_period_closes_a_session_whose_reader_never_returns() -> None:
    closes = PLANS[1].window.closes_at
    gone = [ReaderReport("hall-door", None, None)]

    assert not absences_decidable(closes, gone, closes + timedelta(hours=1))
    assert absences_decidable(closes, gone, closes + timedelta(hours=2))


def test_a_correction_reverses_and_re_credits_without_touching_history() -> None:
    """12 was marked late by a clock error; the secretary corrects it to present."""
    _, credits = settle([tap(1, 12, 1, local(6, 14, 50))])
    ledger = ledger_for(credits)
    before = ledger.entries
    late_credit = ledger.standing_credits()[(12, 1)]

    _, corrected = settle([tap(1, 12, 1, local(6, 14, 30))])

    ledger = ledger.append(reconcile(ledger, corrected, "reader clock was 20 minutes fast"))

    assert ledger.entries[: len(before)] == before
    assert ledger.standing_credits()[(12, 1)].amount == 3
    reversal = next(e for e in ledger.entries if e.reverses_id == late_credit.id)
    assert reversal.amount == -late_credit.amount
    assert reversal.source is LedgerSource.REVERSAL
    assert ledger.balance(12) == 3 - 1  # less 1 for missing both 党课 occurrences
    with pytest.raises(LedgerError, match="already been reversed"):
        reversal_of(ledger, late_credit.id, "again")
