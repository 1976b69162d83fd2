"""Attendance read ahead with a batch's cards answers only what it covers."""

from datetime import UTC, datetime

from server.db.lookups import AttendanceInfo, KnownAttendance

AT = datetime(2026, 3, 6, 1, 0, tzinfo=UTC)


def known() -> KnownAttendance:
    stored = AttendanceInfo(1, 10, "present", AT, None)
    return KnownAttendance(frozenset({1, 2}), frozenset({10, 11}), {(1, 10): stored})


def test_pairs_inside_are_answered_stored_or_not() -> None:
    answer = known().answer({(1, 10), (2, 11)})

    assert answer is not None
    assert set(answer) == {(1, 10)}
    assert answer[(1, 10)].status == "present"


def test_a_member_or_session_outside_means_no_answer() -> None:
    assert known().answer({(1, 10), (3, 10)}) is None  # member 3 was not read
    assert known().answer({(1, 12)}) is None  # session 12 was not read


def test_no_pairs_is_an_empty_answer() -> None:
    assert known().answer(set()) == {}
