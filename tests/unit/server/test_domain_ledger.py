"""Properties of attendance and the ledger for any taps, in any order, with any repeats."""

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.attendance import TapFact, TapKind, fold_taps
from server.domain.ledger import Ledger, adjustment, corrected, reconcile, reversal_of
from server.domain.points import LedgerSource
from server.errors import LedgerError
from tests.unit.server.month import BOOK, PLANS, ZONE, ledger_for, settle

MEMBERS = (11, 12, 13, 14)


@st.composite
def taps(draw: st.DrawFn) -> list[TapFact]:
    """Taps by the month's members on its sessions, from 40 minutes before to the end."""
    count = draw(st.integers(0, 25))
    made = []
    for n in range(count):
        plan = PLANS[draw(st.sampled_from(sorted(PLANS)))]
        span = int((plan.ends_at - plan.starts_at).total_seconds() // 60) + 29
        at = plan.starts_at - timedelta(minutes=29) + timedelta(minutes=draw(st.integers(0, span)))
        made.append(
            TapFact(
                f"e{n}",
                draw(st.sampled_from(MEMBERS)),
                plan.session_id,
                draw(st.sampled_from(TapKind)),
                at,
            )
        )
    return made


@st.composite
def shuffled_with_repeats(draw: st.DrawFn) -> tuple[list[TapFact], list[TapFact]]:
    """A tap set, and the same set permuted with some taps delivered again."""
    original = draw(taps())
    repeats = draw(st.lists(st.sampled_from(original), max_size=8)) if original else []
    return original, draw(st.permutations([*original, *repeats]))


@given(shuffled_with_repeats())
@settings(max_examples=150, deadline=None)
def test_any_order_any_repeats_same_attendance_and_same_ledger(
    case: tuple[list[TapFact], list[TapFact]],
) -> None:
    original, delivered = case

    assert fold_taps(delivered) == fold_taps(original)
    scorables, credits = settle(original)
    again_scorables, again_credits = settle(delivered)
    assert again_scorables == scorables
    assert ledger_for(again_credits) == ledger_for(credits)


@given(shuffled_with_repeats())
@settings(max_examples=100, deadline=None)
def test_crediting_tap_by_tap_converges_and_keeps_history(
    case: tuple[list[TapFact], list[TapFact]],
) -> None:
    """Re-scored after every delivery, the standing credits end where settling once does."""
    original, delivered = case
    ledger = Ledger()
    for upto in range(len(delivered) + 1):
        _, target = settle(delivered[:upto])
        before = ledger.entries
        ledger = ledger.append(reconcile(ledger, target, "tap arrived"))
        assert ledger.entries[: len(before)] == before  # append-only
    _, final = settle(original)
    standing = {k: (e.amount, e.rule_version) for k, e in ledger.standing_credits().items()}
    assert standing == {k: (c.amount, c.rule_version) for k, c in final.items()}
    settled_once = ledger_for(final).balances()
    assert {m: b for m, b in ledger.balances().items() if b or m in settled_once} == settled_once


@given(taps())
@settings(max_examples=150, deadline=None)
def test_caps_are_never_exceeded(made: list[TapFact]) -> None:
    _, credits = settle(made)
    earned: dict[tuple[int, str, object], int] = {}
    for credit in credits.values():
        if credit.amount <= 0:
            continue
        plan = PLANS[credit.session_id]
        day = plan.starts_at.astimezone(ZONE).date()
        for bucket in (("d", day), ("m", day.month), ("q", (day.month - 1) // 3)):
            key = (credit.member_id, credit.category, bucket)
            earned[key] = earned.get(key, 0) + credit.amount
    caps = BOOK.versions[0].caps
    for (_, category, (kind, _)), total in earned.items():
        limit = getattr(caps[category], {"d": "day", "m": "month", "q": "quarter"}[kind])
        assert limit is None or total <= limit


@given(taps(), st.lists(st.tuples(st.sampled_from(MEMBERS), st.integers(-5, 5)), max_size=6))
@settings(max_examples=100, deadline=None)
def test_the_ledger_sum_always_equals_the_balance(
    made: list[TapFact], adjustments: list[tuple[int, int]]
) -> None:
    _, credits = settle(made)
    ledger = ledger_for(credits)
    for member, amount in adjustments:
        if amount:
            ledger = ledger.append([adjustment(member, amount, "secretary's correction", "v")])
    for member in MEMBERS:
        assert ledger.balance(member) == sum(
            e.amount for e in ledger.entries if e.member_id == member
        )
    assert sum(ledger.balances().values()) == sum(e.amount for e in ledger.entries)


@given(taps(), st.data())
@settings(max_examples=100, deadline=None)
def test_reversal_and_re_credit_leave_history_intact(
    made: list[TapFact], data: st.DataObject
) -> None:
    _, credits = settle(made)
    ledger = ledger_for(credits)
    if not ledger.entries:
        return
    target = data.draw(st.sampled_from(ledger.entries))
    new_amount = data.draw(st.integers(-5, 5))
    before = ledger.entries

    ledger = ledger.append(corrected(ledger, target.id, new_amount, "recount"))

    assert ledger.entries[: len(before)] == before
    assert target.id in ledger.reversed_ids()
    reversal = next(e for e in ledger.entries if e.reverses_id == target.id)
    assert reversal.source is LedgerSource.REVERSAL
    assert reversal.amount == -target.amount
    assert ledger.balance(target.member_id) == (
        sum(e.amount for e in before if e.member_id == target.member_id)
        - target.amount
        + new_amount
    )
    with pytest.raises(LedgerError, match="already been reversed"):
        reversal_of(ledger, target.id, "twice")
