"""record_taps against real SQLite and PostgreSQL databases."""

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from protocol import AckResult, CardTech, ReaderState, Status, TapMode
from server.db import lookups
from server.db.engine import Database
from server.db.models import (
    Attendance,
    AttendanceSession,
    AuditEntry,
    Card,
    EnrollRequest,
    LedgerEntry,
    Member,
    MemberOrgHistory,
    OrgUnit,
    Reader,
    SessionAudience,
    SessionRoom,
    TapRecord,
    UnknownCard,
)
from server.domain import display
from server.domain.points import ActivityRule, RuleSet, RuleVersion
from server.sample import MinimalSeed, TapBuilder
from server.services.cards import enrol_tapped_card
from server.services.readers import StatusReport, record_statuses
from server.services.rules import add_rule_version
from server.services.taps import (
    Outcome,
    ReceivedTap,
    RejectedPayload,
    Submission,
    record_tap,
    record_taps,
)
from server.services.unit_of_work import HeldConnection, UnitOfWork

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai; the seeded session starts


def record(database: Database, *batch: Submission) -> list[Outcome]:
    return record_taps(UnitOfWork(database.write_sessions), list(batch))


def count(database: Database, model: type[Any], *where: Any) -> int:
    with database.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def ledger(database: Database) -> list[tuple[int, int, str, str]]:
    with database.sessions() as db:
        rows = db.execute(
            select(
                LedgerEntry.member_id,
                LedgerEntry.amount,
                LedgerEntry.source,
                LedgerEntry.rule_version,
            ).order_by(LedgerEntry.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_first_tap_is_accepted_with_attendance_and_credit(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    [outcome] = record(database, taps.received())

    assert outcome.result is AckResult.ACCEPTED
    assert outcome.points == 2
    assert outcome.display.title == "签到成功 +2"
    assert outcome.display.lines == ("张三", "测试学习会")
    with database.sessions() as db:
        attendance = db.scalars(select(Attendance)).one()
    assert (attendance.member_id, attendance.session_id) == (seeded.member_id, seeded.session_id)
    assert attendance.status == "present"
    assert attendance.checked_in_at == NOW
    assert ledger(database) == [(seeded.member_id, 2, "attendance", "fixed-per-activity/1")]


def test_ack_carries_the_outcome(database: Database, taps: TapBuilder) -> None:
    tap = taps.received()
    [outcome] = record(database, tap)

    ack = outcome.ack()
    assert ack is not None
    assert ack.event_id == tap.tap.event_id
    assert (ack.result, ack.points, ack.display.title) == (AckResult.ACCEPTED, 2, "签到成功 +2")


def test_tap_after_grace_is_late_and_still_credited(database: Database, taps: TapBuilder) -> None:
    at = NOW + timedelta(minutes=6)
    [outcome] = record(database, taps.received(at=at, received_at=at))

    assert outcome.result is AckResult.ACCEPTED
    assert outcome.points == 2
    assert "迟到 09:06" in outcome.display.lines
    with database.sessions() as db:
        assert db.scalars(select(Attendance.status)).one() == "late"


def _store_rules(database: Database, effective_from: date, **values: int) -> None:
    rules = RuleSet(
        RuleVersion("branch/2025"),
        effective_from,
        {"test_study": ActivityRule("study", **values)},  # type: ignore[arg-type]
    )
    with database.write_sessions.begin() as db:
        add_rule_version(db.connection(), rules)


@pytest.mark.parametrize("case", [(0, 5, "present"), (6, 3, "late")], ids=["present", "late"])
def test_tap_time_credit_uses_the_rule_version_in_effect(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, case: tuple[int, int, str]
) -> None:
    minutes, points, status = case
    _store_rules(database, date(2025, 3, 1), present=5, late=3)
    at = NOW + timedelta(minutes=minutes)

    [outcome] = record(database, taps.received(at=at, received_at=at))

    assert (outcome.result, outcome.points) == (AckResult.ACCEPTED, points)
    assert ledger(database) == [(seeded.member_id, points, "attendance", "branch/2025")]
    with database.sessions() as db:
        assert db.scalars(select(Attendance.status)).one() == status


def test_a_version_not_yet_in_effect_leaves_the_fixed_points(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    _store_rules(database, date(2025, 3, 4), present=5, late=3)

    [outcome] = record(database, taps.received())

    assert outcome.points == 2
    assert ledger(database) == [(seeded.member_id, 2, "attendance", "fixed-per-activity/1")]


def test_repeated_event_id_is_answered_with_the_original_and_not_credited_twice(
    database: Database, taps: TapBuilder
) -> None:
    tap = taps.received()
    [first] = record(database, tap)
    [again] = record(database, tap)

    assert again.result is AckResult.DUPLICATE
    assert (again.points, again.display) == (first.points, first.display)
    assert again.detail == "already recorded as accepted"
    assert count(database, TapRecord) == 1
    assert count(database, Attendance) == 1
    assert len(ledger(database)) == 1


def test_repeated_event_id_within_one_batch(database: Database, taps: TapBuilder) -> None:
    tap = taps.received()
    first, again = record(database, tap, tap)

    assert first.result is AckResult.ACCEPTED
    assert again.result is AckResult.DUPLICATE
    assert again.points == 2
    assert again.display == first.display
    assert count(database, TapRecord) == 1
    assert len(ledger(database)) == 1


def test_same_member_twice_is_a_duplicate_check_in(database: Database, taps: TapBuilder) -> None:
    later = NOW + timedelta(minutes=2)
    first, second = record(database, taps.received(), taps.received(at=later))
    [third] = record(database, taps.received(at=later, received_at=later))

    assert first.result is AckResult.ACCEPTED
    for outcome in (second, third):
        assert outcome.result is AckResult.DUPLICATE
        assert outcome.points == 0
        assert outcome.display.title == "重复签到"
        assert "已于 09:00 签到" in outcome.display.lines
    assert count(database, TapRecord) == 3
    assert len(ledger(database)) == 1


def test_unknown_card_goes_to_the_inbox(database: Database, taps: TapBuilder) -> None:
    later = NOW + timedelta(minutes=1)
    first, second = record(database, taps.received(uid="DEADBEEF"), taps.received(uid="DEADBEEF"))
    [third] = record(
        database, taps.received(uid="DEADBEEF", at=later, received_at=later, mode=TapMode.ENROLL)
    )

    assert first.result is second.result is AckResult.UNKNOWN_CARD
    assert first.display.title == "未登记的卡"
    assert "卡号 DEADBEEF" in first.display.lines
    assert third.result is AckResult.UNKNOWN_CARD
    assert third.display.title == "卡已收录"
    with database.sessions() as db:
        inbox = db.scalars(select(UnknownCard)).one()
    assert (inbox.tech, inbox.uid, inbox.tap_count) == ("iso14443a", "DEADBEEF", 3)
    assert (inbox.first_seen_at, inbox.last_seen_at) == (NOW, later)
    assert (inbox.last_reader_id, inbox.last_mode) == ("room-1", "enroll")
    assert count(database, Attendance) == 0


def pick_for_enrolment(
    database: Database, seeded: MinimalSeed, created_at: datetime, expires_at: datetime
) -> int:
    """What the console's 刷卡录入 does: the seeded member waits for the reader's next new card."""
    with database.write_sessions.begin() as db:
        request = EnrollRequest(
            reader_id=seeded.reader_id,
            member_id=seeded.member_id,
            requested_by="admin",
            created_at=created_at,
            expires_at=expires_at,
        )
        db.add(request)
        db.flush()
        return request.id


def test_an_enrolment_tap_binds_the_card_to_the_member_an_administrator_picked(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    """Bound by the ingest itself: whether the console page is still open or not."""
    pick_for_enrolment(database, seeded, NOW - timedelta(minutes=10), NOW - timedelta(minutes=7))
    [unpicked] = record(database, taps.received(uid="0A0B0C0D", mode=TapMode.ENROLL))
    request_id = pick_for_enrolment(
        database, seeded, NOW - timedelta(seconds=5), NOW + timedelta(minutes=3)
    )
    [bound] = record(database, taps.received(uid="0A0B0C0E", mode=TapMode.ENROLL))
    [again] = record(database, taps.received(uid="0A0B0C0E", mode=TapMode.ENROLL))
    [after] = record(database, taps.received(uid="0A0B0C0F", mode=TapMode.ENROLL))

    # The expired pick bound nothing: filed for an administrator, as before.
    assert unpicked.result is AckResult.UNKNOWN_CARD
    assert unpicked.display.lines == ("卡号 0A0B0C0D", "等待管理员绑定")
    assert bound.result is AckResult.ACCEPTED
    assert bound.display.title == "卡已绑定"
    assert bound.display.lines == (seeded.member_name, "卡号 0A0B0C0E")
    assert bound.member_id == seeded.member_id
    with database.sessions() as db:
        card = db.scalars(select(Card).where(Card.uid == "0A0B0C0E")).one()
        request = db.get(EnrollRequest, request_id)
        audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "card.enrol")).one()
        tap = db.scalars(select(TapRecord).where(TapRecord.event_id == bound.event_id)).one()
        filed = set(db.scalars(select(UnknownCard.uid)))
    assert (card.member_id, card.status) == (seeded.member_id, "active")
    assert request is not None
    assert (request.card_id, request.completed_at) == (card.id, NOW)
    assert (audit.actor, audit.details["card_id"]) == ("admin", card.id)
    assert (tap.card_id, tap.member_id, tap.result) == (card.id, seeded.member_id, "accepted")
    # Now the member's card; the pick is done, so the next new card is filed.
    assert again.result is AckResult.DUPLICATE
    assert again.display == display.card_already_enrolled(seeded.member_name)
    assert after.result is AckResult.UNKNOWN_CARD
    assert filed == {"0A0B0C0D", "0A0B0C0F"}


def test_the_ingest_worker_s_held_connection_binds_the_card_too(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    """The worker's transactions run on a Core connection, not a Session: same binding."""
    pick_for_enrolment(database, seeded, NOW - timedelta(seconds=5), NOW + timedelta(minutes=3))
    held = HeldConnection(database.writer)
    try:
        [bound] = record_taps(held, [taps.received(uid="0A0B0C0E", mode=TapMode.ENROLL)])
        [checked_in] = record_taps(held, [taps.received(uid="0A0B0C0E")])
    finally:
        held.close()

    assert bound.result is AckResult.ACCEPTED
    assert (checked_in.result, checked_in.member_id) == (AckResult.ACCEPTED, seeded.member_id)
    assert count(database, Card, Card.uid == "0A0B0C0E", Card.member_id == seeded.member_id) == 1


def test_a_new_card_tapped_twice_in_one_batch_is_bound_once(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    pick_for_enrolment(database, seeded, NOW - timedelta(seconds=5), NOW + timedelta(minutes=3))
    first, second = record(
        database,
        taps.received(uid="0A0B0C0E", mode=TapMode.ENROLL),
        taps.received(uid="0A0B0C0E", mode=TapMode.ENROLL, at=NOW + timedelta(seconds=1)),
    )

    assert [first.result, second.result] == [AckResult.ACCEPTED, AckResult.DUPLICATE]
    assert second.display == display.card_already_enrolled(seeded.member_name)
    assert count(database, Card, Card.uid == "0A0B0C0E") == 1
    assert count(database, UnknownCard) == 0


def test_a_pick_on_another_reader_binds_nothing_here(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    with database.write_sessions.begin() as db:
        db.add(Reader(reader_id="desk-2", name="二号录入台", mode=TapMode.ENROLL.value))
    pick_for_enrolment(database, seeded, NOW - timedelta(seconds=5), NOW + timedelta(minutes=3))
    [outcome] = record(
        database, taps.received(uid="0A0B0C0E", mode=TapMode.ENROLL, reader_id="desk-2")
    )

    assert outcome.result is AckResult.UNKNOWN_CARD
    assert outcome.display == display.card_filed("0A0B0C0E")
    assert count(database, Card, Card.uid == "0A0B0C0E") == 0


def test_a_card_made_active_since_the_batch_looked_is_left_to_be_filed(
    database: Database, seeded: MinimalSeed, caplog: pytest.LogCaptureFixture
) -> None:
    """The binding's savepoint is rolled back; the batch's transaction goes on."""
    request_id = pick_for_enrolment(
        database, seeded, NOW - timedelta(seconds=5), NOW + timedelta(minutes=3)
    )
    with database.engine.begin() as conn:
        bound = enrol_tapped_card(
            conn,
            reader_id=seeded.reader_id,
            tech=seeded.card_tech.value,
            uid=seeded.card_uid,  # the seeded member's active card
            tapped_at=NOW,
            received_at=NOW,
        )
        still = conn.scalar(select(func.count()).select_from(Card))

    assert bound is None
    assert still == 1
    said = [r.getMessage() for r in caplog.records if r.name == "server.services.cards"]
    assert said == [
        f"enrolment tap on {seeded.reader_id} not bound to {seeded.member_name}: "
        f"card {seeded.card_uid} is already active for {seeded.member_name}"
    ]
    with database.sessions() as db:
        request = db.get(EnrollRequest, request_id)
        assert request is not None
        assert request.card_id is None  # still open for the next new card
        assert db.scalars(select(AuditEntry)).all() == []


def test_enrolling_a_known_card_does_not_file_it(database: Database, taps: TapBuilder) -> None:
    [outcome] = record(database, taps.received(mode=TapMode.ENROLL))

    assert outcome.result is AckResult.DUPLICATE
    assert outcome.display.title == "卡已登记"
    assert count(database, UnknownCard) == 0
    assert count(database, Attendance) == 0


@pytest.mark.parametrize(("status", "title"), [("lost", "卡已挂失"), ("revoked", "卡已注销")])
def test_blocked_card_is_refused_and_flagged(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, status: str, title: str
) -> None:
    with database.write_sessions.begin() as db:
        db.execute(update(Card).where(Card.id == seeded.card_id).values(status=status))

    [outcome] = record(database, taps.received())

    assert outcome.result is AckResult.CARD_REVOKED
    assert outcome.display.title == title
    with database.sessions() as db:
        row = db.scalars(select(TapRecord)).one()
    assert row.flagged
    assert row.member_id == seeded.member_id
    assert count(database, Attendance) == 0


def test_replaced_card_refused_but_new_active_card_with_same_uid_wins(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    with database.write_sessions.begin() as db:
        db.execute(update(Card).where(Card.id == seeded.card_id).values(status="replaced"))
        db.add(Card(tech="iso14443a", uid=seeded.card_uid, member_id=seeded.member_id))

    [outcome] = record(database, taps.received())

    assert outcome.result is AckResult.ACCEPTED


def test_member_outside_active_dates_is_refused(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    with database.write_sessions.begin() as db:
        db.execute(
            update(Member).where(Member.id == seeded.member_id).values(active_to=date(2025, 3, 2))
        )

    [outcome] = record(database, taps.received())

    assert outcome.result is AckResult.CARD_REVOKED
    assert outcome.display.title == "卡已停用"


@pytest.mark.parametrize(
    "offset",
    [timedelta(minutes=-31), timedelta(hours=1), timedelta(hours=3)],
    ids=["before-open", "at-close", "after-close"],
)
def test_no_session_outside_the_window(
    database: Database, taps: TapBuilder, offset: timedelta
) -> None:
    at = NOW + offset
    [outcome] = record(database, taps.received(at=at, received_at=at))

    assert outcome.result is AckResult.NO_SESSION
    assert outcome.display.title == "当前没有可签到的会议"
    assert outcome.display.lines == ("测试会议室",)
    assert count(database, Attendance) == 0


def test_window_opening_instant_counts(database: Database, taps: TapBuilder) -> None:
    at = NOW - timedelta(minutes=30)
    [outcome] = record(database, taps.received(at=at, received_at=at))

    assert outcome.result is AckResult.ACCEPTED


def test_unknown_reader_is_stored_and_rejected(database: Database, taps: TapBuilder) -> None:
    [outcome] = record(database, taps.received(reader_id="hall-9"))

    assert outcome.result is AckResult.REJECTED
    assert outcome.detail == "unknown reader"
    assert outcome.display.title == "读卡器未登记"
    with database.sessions() as db:
        row = db.scalars(select(TapRecord)).one()
    assert (row.reader_id, row.result, row.flagged) == ("hall-9", "rejected", True)


def test_tap_stamped_in_the_future_is_rejected_and_flagged(
    database: Database, taps: TapBuilder
) -> None:
    ahead = taps.received(at=NOW + timedelta(minutes=10), received_at=NOW)
    within = taps.received(at=NOW + timedelta(seconds=90), received_at=NOW)

    refused, tolerated = record(database, ahead, within)

    assert refused.result is AckResult.REJECTED
    assert refused.display.title == "时间异常"
    assert refused.detail is not None
    assert "600s ahead" in refused.detail
    assert tolerated.result is AckResult.ACCEPTED
    with database.sessions() as db:
        flagged = dict(db.execute(select(TapRecord.event_id, TapRecord.flagged)).all())
    assert flagged == {ahead.tap.event_id: True, within.tap.event_id: False}


def test_kiosk_answers_the_balance_including_this_batch(
    database: Database, taps: TapBuilder
) -> None:
    before, _, after = record(
        database,
        taps.received(mode=TapMode.KIOSK),
        taps.received(),
        taps.received(mode=TapMode.KIOSK),
    )

    assert (before.result, before.points) == (AckResult.ACCEPTED, 0)
    assert (after.result, after.points) == (AckResult.ACCEPTED, 2)
    assert after.display.title == "张三 积分 2"
    assert count(database, Attendance) == 1


def test_reader_mode_applies_when_the_tap_has_none(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    with database.write_sessions.begin() as db:
        db.execute(update(Reader).values(mode="kiosk"))

    [outcome] = record(database, taps.received())

    assert outcome.detail == "kiosk: points balance"
    assert count(database, Attendance) == 0
    with database.sessions() as db:
        assert db.scalars(select(TapRecord.mode)).one() == "kiosk"


def test_checkout_after_check_in(database: Database, taps: TapBuilder) -> None:
    out_at = NOW + timedelta(minutes=50)
    record(database, taps.received())
    [checkout] = record(database, taps.received(at=out_at, mode=TapMode.CHECKOUT))
    [again] = record(database, taps.received(at=out_at, mode=TapMode.CHECKOUT))

    assert (checkout.result, checkout.display.title) == (AckResult.ACCEPTED, "签退成功")
    assert (again.result, again.display.title) == (AckResult.DUPLICATE, "重复签退")
    with database.sessions() as db:
        attendance = db.scalars(select(Attendance)).one()
    assert attendance.checked_out_at == out_at
    assert len(ledger(database)) == 1


def test_checkout_without_check_in(database: Database, taps: TapBuilder) -> None:
    [outcome] = record(database, taps.received(mode=TapMode.CHECKOUT))

    assert outcome.result is AckResult.NOT_EXPECTED
    assert count(database, Attendance) == 0


def _restrict_audience(database: Database, seed: MinimalSeed, *, walk_in: bool) -> int:
    """Give the session an audience of another unit; return that unit's id."""
    with database.write_sessions.begin() as db:
        other = OrgUnit(code="T02", name="另一支部")
        db.add(other)
        db.flush()
        db.add(SessionAudience(session_id=seed.session_id, org_unit_id=other.id))
        db.execute(
            update(AttendanceSession)
            .where(AttendanceSession.id == seed.session_id)
            .values(allow_walk_in=walk_in)
        )
        return other.id


def test_outside_the_audience_without_walk_ins_is_not_expected(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    _restrict_audience(database, seeded, walk_in=False)

    [outcome] = record(database, taps.received())

    assert outcome.result is AckResult.NOT_EXPECTED
    assert outcome.display.title == "不在本次参会名单"
    assert count(database, Attendance) == 0
    with database.sessions() as db:
        assert db.scalars(select(TapRecord.session_id)).one() == seeded.session_id


def test_walk_in_is_credited(database: Database, seeded: MinimalSeed, taps: TapBuilder) -> None:
    _restrict_audience(database, seeded, walk_in=True)

    [outcome] = record(database, taps.received())

    assert outcome.result is AckResult.ACCEPTED
    assert outcome.detail == "present; walk-in"


def test_audience_includes_sub_units_and_membership_at_session_start(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    other = _restrict_audience(database, seeded, walk_in=False)
    with database.write_sessions.begin() as db:
        # The member's unit sits under the audience unit from before the session...
        db.execute(update(OrgUnit).where(OrgUnit.id == seeded.org_unit_id).values(parent_id=other))
    [expected] = record(database, taps.received())
    assert expected.result is AckResult.ACCEPTED

    with database.write_sessions.begin() as db:
        # ...and history decides, not the member's current unit.
        db.execute(update(OrgUnit).where(OrgUnit.id == seeded.org_unit_id).values(parent_id=None))
        db.execute(
            update(MemberOrgHistory)
            .where(MemberOrgHistory.member_id == seeded.member_id)
            .values(valid_to=NOW - timedelta(days=1))
        )
        db.add(
            MemberOrgHistory(
                member_id=seeded.member_id, org_unit_id=other, valid_from=NOW - timedelta(days=1)
            )
        )
        db.add(
            AttendanceSession(
                title="第二场",
                activity_type_id=seeded.activity_type_id,
                starts_at=NOW + timedelta(hours=2),
                ends_at=NOW + timedelta(hours=3),
                checkin_open_minutes=30,
                late_grace_minutes=5,
                allow_walk_in=False,
            )
        )
        db.flush()
        second = db.scalars(
            select(AttendanceSession.id).where(AttendanceSession.title == "第二场")
        ).one()
        db.add(SessionRoom(session_id=second, room_id=seeded.room_id))
        db.add(SessionAudience(session_id=second, org_unit_id=other))
    at = NOW + timedelta(hours=2)
    [moved] = record(database, taps.received(at=at, received_at=at))
    assert moved.result is AckResult.ACCEPTED


def test_nearest_start_wins_between_overlapping_windows(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    with database.write_sessions.begin() as db:
        nxt = AttendanceSession(
            title="下一场",
            activity_type_id=seeded.activity_type_id,
            starts_at=NOW + timedelta(hours=1),
            ends_at=NOW + timedelta(hours=2),
            checkin_open_minutes=30,
            late_grace_minutes=5,
            allow_walk_in=True,
        )
        db.add(nxt)
        db.flush()
        db.add(SessionRoom(session_id=nxt.id, room_id=seeded.room_id))
        next_id = nxt.id
    at = NOW + timedelta(minutes=50)
    [outcome] = record(database, taps.received(at=at, received_at=at))

    assert outcome.display.lines[1] == "下一场"
    with database.sessions() as db:
        assert db.scalars(select(Attendance.session_id)).one() == next_id


def test_malformed_payloads_are_stored_with_reason_and_raw_bytes(database: Database) -> None:
    event_id = uuid.uuid4()
    broken = RejectedPayload("malformed tap: payload is not JSON", NOW, "room-1", None, b"{oops")
    named = RejectedPayload("malformed tap: card.uid: bad", NOW, "room-1", event_id, b'{"x":1}')

    first, second, third = record(database, broken, broken, named)

    assert first.result is second.result is third.result is AckResult.REJECTED
    assert first.ack() is None
    assert third.ack() is not None
    with database.sessions() as db:
        rows = db.execute(
            select(TapRecord.event_id, TapRecord.detail, TapRecord.raw_payload).order_by(
                TapRecord.id
            )
        ).all()
    assert [r[0] for r in rows] == [None, None, event_id]
    assert rows[0][1] == "malformed tap: payload is not JSON"
    assert rows[0][2] == b"{oops"
    [replayed] = record(database, named)
    assert replayed.result is AckResult.DUPLICATE
    assert replayed.detail == "already recorded as rejected"


def test_record_tap_single(database: Database, taps: TapBuilder) -> None:
    outcome = record_tap(UnitOfWork(database.write_sessions), taps.received())

    assert outcome.result is AckResult.ACCEPTED


def test_reader_last_seen_is_updated(database: Database, taps: TapBuilder) -> None:
    received_at = NOW + timedelta(seconds=3)
    record(database, taps.received(received_at=received_at))

    with database.sessions() as db:
        reader = db.scalars(select(Reader)).one()
    assert reader.last_seen_at == received_at
    assert reader.skew_seconds == pytest.approx(-3.0)
    assert reader.skew_measured_at == received_at


def _online(database: Database, reader_id: str, received_at: datetime) -> None:
    status = Status(state=ReaderState.ONLINE, boot_id=uuid.uuid4(), agent_version="t", source="t")
    record_statuses(
        UnitOfWork(database.write_sessions), [StatusReport(reader_id, status, received_at)]
    )


def test_skew_is_kept_when_a_later_status_was_stored_first(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    # The reader's status arrived after its tap but was stored before the tap's batch.
    _online(database, seeded.reader_id, NOW + timedelta(seconds=5))
    record(database, taps.received(received_at=NOW + timedelta(seconds=3)))

    with database.sessions() as db:
        reader = db.scalars(select(Reader)).one()
    assert reader.skew_seconds == pytest.approx(-3.0)
    assert reader.skew_measured_at == NOW + timedelta(seconds=3)
    assert reader.last_seen_at == NOW + timedelta(seconds=5)  # not moved back


def test_an_older_tap_stored_late_moves_neither_skew_nor_last_seen_back(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    record(database, taps.received(received_at=NOW + timedelta(seconds=7)))
    # Another worker's batch with an earlier tap commits afterwards.
    record(
        database,
        taps.received(at=NOW + timedelta(seconds=1), received_at=NOW + timedelta(seconds=2)),
    )
    # And a status from before both.
    _online(database, seeded.reader_id, NOW + timedelta(seconds=4))

    with database.sessions() as db:
        reader = db.scalars(select(Reader)).one()
    assert reader.skew_seconds == pytest.approx(-7.0)
    assert reader.skew_measured_at == NOW + timedelta(seconds=7)
    assert reader.last_seen_at == NOW + timedelta(seconds=7)


def _add_members(database: Database, seed: MinimalSeed, n: int) -> list[str]:
    uids = [f"{0x10000000 + i:08X}" for i in range(n)]
    with database.write_sessions.begin() as db:
        members = [
            Member(
                employee_no=f"M{i:05d}",
                name=f"成员{i}",
                org_unit_id=seed.org_unit_id,
                category="正式党员",
            )
            for i in range(n)
        ]
        db.add_all(members)
        db.flush()
        db.add_all(
            Card(tech=CardTech.ISO14443A.value, uid=uid, member_id=m.id)
            for uid, m in zip(uids, members, strict=True)
        )
    return uids


def test_statement_count_does_not_grow_with_batch_size(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    uids = _add_members(database, seeded, 120)
    statements: list[str] = []

    def count_statement(*args: Any) -> None:
        statements.append(args[2])

    event.listen(database.engine, "before_cursor_execute", count_statement)
    try:
        small = record(database, *(taps.received(uid=u) for u in uids[:20]))
        small_count = len(statements)
        statements.clear()
        large = record(database, *(taps.received(uid=u) for u in uids[20:]))
        large_count = len(statements)
    finally:
        event.remove(database.engine, "before_cursor_execute", count_statement)

    assert {o.result for o in small + large} == {AckResult.ACCEPTED}
    assert large_count == small_count
    assert len(ledger(database)) == 120


def test_concurrent_batches_never_double_credit(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    uids = _add_members(database, seeded, 40)
    # Two workers receive the same redelivered taps plus fresh taps by the same people.
    shared = [taps.received(uid=u) for u in uids]
    extra_a = [taps.received(uid=u) for u in uids[::2]]
    extra_b = [taps.received(uid=u) for u in uids[1::2]]
    barrier = threading.Barrier(2)
    results: dict[str, list[Outcome]] = {}
    errors: list[BaseException] = []

    def worker(name: str, batch: list[ReceivedTap]) -> None:
        try:
            barrier.wait(5)
            results[name] = record(database, *batch)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=("a", shared + extra_a)),
        threading.Thread(target=worker, args=("b", list(reversed(shared)) + extra_b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert not [t.name for t in threads if t.is_alive()], "a recording thread hung"
    assert not errors
    accepted = [
        o for outcomes in results.values() for o in outcomes if o.result is AckResult.ACCEPTED
    ]
    assert len(accepted) == 40
    assert count(database, Attendance) == 40
    assert len(ledger(database)) == 40
    assert count(database, TapRecord) == 40 + 40
    with database.sessions() as db:
        total = db.scalar(select(func.sum(LedgerEntry.amount)))
    assert total == 80


def test_naive_times_are_refused_by_storage(database: Database, seeded: MinimalSeed) -> None:
    naive = NOW.replace(tzinfo=None)
    statement = update(AttendanceSession).values(closes_at=naive)

    with pytest.raises(Exception, match="naive datetime"), database.engine.begin() as conn:
        conn.execute(statement)


def _stale_once(monkeypatch: pytest.MonkeyPatch, lookup: str) -> None:
    """`lookups.<lookup>` finds nothing once: as if another worker committed after we looked."""
    real = getattr(lookups, lookup)
    calls: list[int] = []

    def stale_first(connection: Any, keys: Any) -> Any:
        calls.append(1)
        return {} if len(calls) == 1 else real(connection, keys)

    monkeypatch.setattr(lookups, lookup, stale_first)


def test_losing_an_attendance_race_downgrades_to_duplicate(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    [winner] = record(database, taps.received())
    _stale_once(monkeypatch, "attendance_for")

    [loser] = record(database, taps.received(at=NOW + timedelta(minutes=1)))

    assert winner.result is AckResult.ACCEPTED
    assert (loser.result, loser.points, loser.display.title) == (
        AckResult.DUPLICATE,
        0,
        "重复签到",
    )
    assert "已于 09:00 签到" in loser.display.lines
    with database.sessions() as db:
        stored = db.execute(select(TapRecord.result, TapRecord.points).order_by(TapRecord.id))
        assert [tuple(r) for r in stored] == [("accepted", 2), ("duplicate", 0)]
    assert len(ledger(database)) == 1


def test_losing_an_event_id_race_answers_with_the_winner(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = taps.received()
    [winner] = record(database, tap)
    _stale_once(monkeypatch, "original_taps")

    [loser] = record(database, tap)

    assert loser.result is AckResult.DUPLICATE
    assert (loser.points, loser.display) == (winner.points, winner.display)
    assert loser.detail == "already recorded as accepted"
    assert count(database, TapRecord) == 1
    assert count(database, Attendance) == 1
    assert len(ledger(database)) == 1


def test_a_tap_lost_to_another_worker_creates_no_attendance_of_its_own(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first copy was stored while the card was unknown; the card is enrolled; a
    # redelivered copy is decided as a check-in by a batch that looked before the
    # first was committed. Its INSERT meets the stored event id: the attendance and
    # credit planned with it must go too, though no attendance exists to conflict with.
    tap = taps.received(uid="10000000")
    [first] = record(database, tap)
    _add_members(database, seeded, 1)  # enrols "10000000"
    _stale_once(monkeypatch, "original_taps")

    [again] = record(database, tap)

    assert first.result is not AckResult.ACCEPTED
    assert again.result is AckResult.DUPLICATE
    assert again.detail == f"already recorded as {first.result.value}"
    assert count(database, TapRecord) == 1
    assert count(database, Attendance) == 0
    assert ledger(database) == []


def test_a_stored_repeat_in_a_batch_of_new_taps_changes_nothing_else(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    # The batch is first decided without looking event ids up; meeting the stored
    # one, it is redone with the lookup first, so the repeat's effects never count.
    [uid] = _add_members(database, seeded, 1)
    stored = taps.received()
    [original] = record(database, stored)
    kiosk, repeat, fresh, balance = record(
        database,
        taps.received(mode=TapMode.KIOSK),
        stored,
        taps.received(uid=uid),
        taps.received(mode=TapMode.KIOSK),
    )

    assert (repeat.result, repeat.points, repeat.display) == (
        AckResult.DUPLICATE,
        original.points,
        original.display,
    )
    assert repeat.detail == "already recorded as accepted"
    assert (fresh.result, fresh.points) == (AckResult.ACCEPTED, 2)
    assert (kiosk.points, balance.points) == (2, 2)  # the repeat credited nothing
    assert count(database, TapRecord) == 4  # the repeat is not stored again
    assert count(database, Attendance) == 2
    assert len(ledger(database)) == 2


def test_a_batch_without_repeats_does_not_look_event_ids_up_first(
    database: Database, taps: TapBuilder
) -> None:
    statements: list[str] = []

    def count_statement(*args: Any) -> None:
        statements.append(args[2])

    event.listen(database.engine, "before_cursor_execute", count_statement)
    try:
        outcomes = record(database, taps.received(), taps.received(mode=TapMode.KIOSK))
    finally:
        event.remove(database.engine, "before_cursor_execute", count_statement)

    assert [o.result for o in outcomes] == [AckResult.ACCEPTED, AckResult.ACCEPTED]
    looked_up = [s for s in statements if s.lstrip().startswith("SELECT") and "FROM taps" in s]
    assert looked_up == []


def test_attendance_lookup_answers_exactly_the_pairs_asked(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    first, second = _add_members(database, seeded, 2)
    record(database, taps.received(uid=first), taps.received(uid=second))
    with database.sessions() as db:
        rows = db.execute(select(Attendance.member_id, Attendance.session_id)).all()
    (m1, s), (m2, _) = sorted(tuple(r) for r in rows)
    asked = [(m1, s), (m2, s + 1), (m1 + m2, s)]  # one stored; two that are not

    with database.engine.connect() as conn:
        found = lookups.attendance_for(conn, asked)
        many = lookups.attendance_for(conn, [(m1, s)] + [(m2 + i, s + 1) for i in range(600)])

    assert set(found) == {(m1, s)}
    assert found[(m1, s)].status == "present"
    assert set(many) == {(m1, s)}


def test_card_lookup_matches_technology_and_uid(database: Database, seeded: MinimalSeed) -> None:
    [uid] = _add_members(database, seeded, 1)
    with database.engine.connect() as conn:
        right = lookups.cards_by_key(conn, [(CardTech.ISO14443A.value, uid)])
        wrong = lookups.cards_by_key(conn, [(CardTech.FELICA.value, uid)])

    assert [c.uid for c in right.values()] == [uid]
    assert wrong == {}
