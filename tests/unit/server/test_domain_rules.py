"""Rule versions, re-scoring previews, recurrence and rankings."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.domain.attendance import TapFact, TapKind
from server.domain.ledger import diff, reconcile
from server.domain.points import ActivityRule, RuleBook, RuleSet, RuleVersion
from server.domain.rankings import (
    BranchRecord,
    MonthRecord,
    adjustments_since,
    benchmark_branches,
    monthly_star,
    rank_members,
)
from server.domain.recurrence import expand
from server.domain.roster import Membership, move, unit_at
from server.errors import DomainError, InvalidRecurrence, InvalidRule
from tests.unit.server.month import BOOK, V1, ledger_for, local, settle

ZONE = ZoneInfo("Asia/Shanghai")

V2 = RuleSet(
    version=RuleVersion("branch/2026-2"),
    effective_from=date(2026, 3, 9),
    activities={
        **V1.activities,
        "党课": ActivityRule("organisational", present=4, late=2, absent=-1),
    },
    caps=V1.caps,
)


def test_the_version_in_effect_is_the_latest_started() -> None:
    book = BOOK.with_version(V2)

    assert book.in_effect(date(2026, 3, 8)).version == "branch/2026-1"
    assert book.in_effect(date(2026, 3, 9)).version == "branch/2026-2"
    with pytest.raises(InvalidRule, match="no points rule version"):
        book.in_effect(date(2025, 12, 31))


def test_two_versions_on_one_day_are_refused() -> None:
    with pytest.raises(InvalidRule, match="same day"):
        RuleBook((V1, RuleSet(RuleVersion("other"), V1.effective_from, {})))


def test_rescoring_previews_the_differences_then_applies_them_as_reversals() -> None:
    taps = [
        TapFact("e1", 11, 3, TapKind.CHECKIN, local(12, 9)),
        TapFact("e2", 11, 1, TapKind.CHECKIN, local(6, 14, 30)),
    ]
    _, old = settle(taps)
    ledger = ledger_for(old)
    _, new = settle(taps, book=BOOK.with_version(V2))
    march_9_on = {3, 4}

    preview = diff(ledger, new, lambda key: key[1] in march_9_on)

    moved = [(c.member_id, c.session_id, c.old_amount, c.new_amount) for c in preview if c.delta]
    assert moved == [(11, 3, 2, 4)]
    # Unchanged amounts are still re-attributed to the version that now explains them.
    assert {c.new_version for c in preview} == {"branch/2026-2"}
    assert {c.session_id for c in preview} == {3}
    applied = ledger.append(reconcile(ledger, new, "rules v2", lambda key: key[1] in march_9_on))
    assert applied.balance(11) == ledger.balance(11) + 2
    assert applied.entries[: len(ledger.entries)] == ledger.entries


def test_first_friday_of_every_month() -> None:
    found = expand(
        "RRULE:FREQ=MONTHLY;BYDAY=1FR",
        datetime(2026, 1, 2, 14, 30, tzinfo=ZONE),
        timedelta(hours=2),
        ZONE,
        until=datetime(2026, 4, 30, tzinfo=ZONE),
    )

    assert [o.starts_at.astimezone(ZONE).date() for o in found] == [
        date(2026, 1, 2),
        date(2026, 2, 6),
        date(2026, 3, 6),
        date(2026, 4, 3),
    ]
    assert all(o.starts_at.astimezone(ZONE).hour == 14 for o in found)
    assert all(o.ends_at - o.starts_at == timedelta(hours=2) for o in found)


@pytest.mark.parametrize("rule", ["FREQ=SOMETIMES", "nonsense", ""])
def test_bad_rules_are_refused(rule: str) -> None:
    with pytest.raises(InvalidRecurrence):
        expand(rule, datetime(2026, 1, 2, tzinfo=ZONE), timedelta(hours=1), ZONE, limit=5)


def test_an_endless_rule_needs_a_bound() -> None:
    with pytest.raises(InvalidRecurrence, match="COUNT or UNTIL"):
        expand("FREQ=DAILY", datetime(2026, 1, 2, tzinfo=ZONE), timedelta(hours=1), ZONE, limit=5)


def test_equal_points_share_a_rank() -> None:
    ranked = rank_members({1: 5, 2: 7, 3: 5, 4: 1})

    assert [(r.rank, r.member_id) for r in ranked] == [(1, 2), (2, 1), (2, 3), (4, 4)]


def test_monthly_star_tie_breaks() -> None:
    a = MonthRecord(1, "E002", points=10, expected=4, attended=4, late=1)
    b = MonthRecord(2, "E001", points=10, expected=4, attended=3, late=0)
    c = MonthRecord(3, "E003", points=10, expected=4, attended=4, late=0)
    d = MonthRecord(4, "E000", points=10, expected=4, attended=4, late=0)

    assert monthly_star([a, b]) == a  # better rate
    assert monthly_star([a, c]) == c  # fewer lates
    assert monthly_star([c, d]) == d  # lower employee number
    assert monthly_star([MonthRecord(5, "E5", 0, 1, 0, 0)]) is None


def test_a_small_perfect_branch_does_not_outrank_a_large_excellent_one() -> None:
    small = BranchRecord(1, members=3, expected=3, attended=3, points=9)
    large = BranchRecord(2, members=300, expected=3000, attended=2900, points=900)
    poor = BranchRecord(3, members=100, expected=1000, attended=600, points=200)

    ranked = {b.org_unit_id: b for b in benchmark_branches([small, large, poor])}

    assert ranked[1].attendance_rate == 1.0
    assert ranked[2].attendance_rank == 1
    assert ranked[1].fair_attendance_rate < 1.0


def test_corrections_after_publication_show_as_adjustments() -> None:
    changed = adjustments_since({1: 10, 2: 5}, {1: 12, 2: 5, 3: 1})

    assert [(a.member_id, a.delta) for a in changed] == [(1, 2), (3, 1)]


def test_a_move_ends_one_membership_where_the_next_begins() -> None:
    current = Membership(14, 2, local(1, 0))

    ended, started = move(current, 4, local(9, 0))

    assert (ended.valid_to, started.valid_from, started.org_unit_id) == (
        local(9, 0),
        local(9, 0),
        4,
    )
    assert unit_at([ended, started], 14, local(8, 23)) == 2
    assert unit_at([ended, started], 14, local(9, 0)) == 4


@pytest.mark.parametrize(
    ("unit", "day", "message"), [(2, 9, "already in"), (4, 1, "after the member joined")]
)
def test_moves_that_make_no_sense_are_refused(unit: int, day: int, message: str) -> None:
    with pytest.raises(DomainError, match=message):
        move(Membership(14, 2, local(1, 0)), unit, local(day, 0))
