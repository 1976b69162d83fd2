"""Check-in windows, audiences and session resolution."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.attendance import (
    AttendanceStatus,
    Audience,
    CheckinWindow,
    OrgTree,
    SessionCandidate,
    resolve_session,
)
from server.errors import InvalidWindow

START = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


def window(**kwargs: object) -> CheckinWindow:
    options: dict[str, object] = {"open_minutes": 30, "late_grace_minutes": 5}
    options.update(kwargs)
    return CheckinWindow.for_session(START, END, **options)  # type: ignore[arg-type]


def candidate(session_id: int, start: datetime, **kwargs: object) -> SessionCandidate:
    return SessionCandidate(
        session_id=session_id,
        title=f"s{session_id}",
        activity_type="study",
        starts_at=start,
        window=CheckinWindow.for_session(
            start, start + timedelta(hours=1), open_minutes=30, late_grace_minutes=5
        ),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("offset", "covered"),
    [
        (timedelta(minutes=-31), False),  # before open
        (timedelta(minutes=-30, microseconds=-1), False),
        (timedelta(minutes=-30), True),  # exactly at open
        (timedelta(0), True),
        (timedelta(minutes=59, seconds=59), True),
        (timedelta(hours=1), False),  # exactly at close
        (timedelta(hours=2), False),  # after close
    ],
)
def test_window_edges(offset: timedelta, covered: bool) -> None:
    assert window().covers(START + offset) is covered


@pytest.mark.parametrize(
    ("offset", "status"),
    [
        (timedelta(minutes=-10), AttendanceStatus.PRESENT),
        (timedelta(minutes=5), AttendanceStatus.PRESENT),  # exactly start + grace
        (timedelta(minutes=5, microseconds=1), AttendanceStatus.LATE),
        (timedelta(minutes=40), AttendanceStatus.LATE),
    ],
)
def test_late_boundary(offset: timedelta, status: AttendanceStatus) -> None:
    assert window().status_at(START + offset) is status


def test_set_closing_time_overrides_the_end() -> None:
    early = window(closes_at=START + timedelta(minutes=15))

    assert early.covers(START + timedelta(minutes=14))
    assert not early.covers(START + timedelta(minutes=15))


def test_window_works_in_any_zone() -> None:
    shanghai = timezone(timedelta(hours=8))
    assert window().covers(datetime(2025, 3, 3, 9, 0, tzinfo=shanghai))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"closes_at": START - timedelta(hours=1)}, "closes"),
        ({"open_minutes": -1}, "0 to 1440"),
        ({"open_minutes": 1441}, "0 to 1440"),
        ({"late_grace_minutes": -1}, "negative"),
    ],
)
def test_invalid_windows_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidWindow, match=message):
        window(**kwargs)


def test_session_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(InvalidWindow, match="before it starts"):
        CheckinWindow.for_session(START, START, open_minutes=0, late_grace_minutes=0)


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidWindow, match="timezone-aware"):
        window().covers(datetime(2025, 3, 3, 9, 0))  # noqa: DTZ001 - the point of the test


def test_no_open_window_resolves_to_nothing() -> None:
    assert resolve_session([candidate(1, START)], START + timedelta(hours=2)) is None
    assert resolve_session([], START) is None


def test_nearest_start_wins_between_back_to_back_sessions() -> None:
    first = candidate(1, START)
    second = candidate(2, START + timedelta(hours=1))

    at_50 = resolve_session([first, second], START + timedelta(minutes=50))
    at_20 = resolve_session([second, first], START + timedelta(minutes=20))

    assert at_50 is not None
    assert at_50.session.session_id == 2
    assert at_20 is not None
    assert at_20.session.session_id == 1


def test_ties_are_broken_by_id_not_input_order() -> None:
    a, b = candidate(7, START), candidate(3, START)

    for order in ([a, b], [b, a]):
        resolution = resolve_session(order, START)
        assert resolution is not None
        assert resolution.session.session_id == 3


def test_expected_session_beats_a_nearer_unexpected_one() -> None:
    mine = candidate(1, START, audience=Audience(org_unit_ids=frozenset({10})))
    other = candidate(
        2, START + timedelta(minutes=10), audience=Audience(member_ids=frozenset({99}))
    )

    resolution = resolve_session(
        [mine, other],
        START + timedelta(minutes=9),
        lambda c: c.audience.includes(5, (10, 1)),
    )

    assert resolution is not None
    assert resolution.session.session_id == 1
    assert resolution.expected


def test_unexpected_member_gets_the_best_open_session() -> None:
    closed = candidate(1, START, allow_walk_in=False, audience=Audience(member_ids=frozenset({1})))

    resolution = resolve_session([closed], START, lambda c: False)

    assert resolution is not None
    assert not resolution.expected
    assert not resolution.credited


def test_audience() -> None:
    tree = OrgTree({1: None, 2: 1, 3: 2, 4: 1})
    branch = Audience(org_unit_ids=frozenset({2}))

    assert Audience().is_open
    assert Audience().includes(42, ())
    assert branch.includes(42, tree.path_to_root(3))  # a group under the branch
    assert not branch.includes(42, tree.path_to_root(4))  # a sibling branch
    assert Audience(member_ids=frozenset({42})).includes(42, tree.path_to_root(4))


def test_org_tree_survives_a_cycle() -> None:
    assert OrgTree({1: 2, 2: 1}).path_to_root(1) == (1, 2)


def test_org_tree_subtree() -> None:
    tree = OrgTree({1: None, 2: 1, 3: 2, 4: 1})

    assert tree.subtree(2) == {2, 3}
    assert tree.subtree(1) == {1, 2, 3, 4}
    assert tree.subtree(3) == {3}


@given(
    open_minutes=st.integers(0, 1440),
    grace=st.integers(0, 600),
    offset_seconds=st.integers(-2 * 86400, 2 * 86400),
)
def test_covered_taps_have_a_status_and_late_only_after_grace(
    open_minutes: int, grace: int, offset_seconds: int
) -> None:
    w = CheckinWindow.for_session(START, END, open_minutes=open_minutes, late_grace_minutes=grace)
    at = START + timedelta(seconds=offset_seconds)

    assert w.covers(at) == (START - timedelta(minutes=open_minutes) <= at < END)
    late = w.status_at(at) is AttendanceStatus.LATE
    assert late == (at > START + timedelta(minutes=grace))
