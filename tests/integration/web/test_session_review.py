"""Session review: leave, manual check-in and void, each audited and reflected in the ledger."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from server.db.models import Attendance, AuditEntry, LeaveRequestRecord, LedgerEntry, TapRecord
from server.services.auth import Role
from server.services.sessions import close
from server.services.unit_of_work import UnitOfWork
from tests.support.console import make_user, sign_in

pytestmark = pytest.mark.integration


def _ledger(database, member_id):
    with database.sessions() as db:
        return [
            (e.amount, e.source, e.reverses_id is not None)
            for e in db.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.member_id == member_id)
                .order_by(LedgerEntry.id)
            )
        ]


def _attendance(database, session_id, member_id):
    with database.sessions() as db:
        return db.scalar(
            select(Attendance.status).where(
                Attendance.session_id == session_id, Attendance.member_id == member_id
            )
        )


def test_manual_checkin_then_void_appends_credit_and_reversal(sqlite_console, branches) -> None:
    console = sqlite_console
    make_user(console.database, "admin", Role.SUPER_ADMIN)
    token = sign_in(console.client, "admin")
    session_id, member = branches.session_a, "A001"
    member_id = branches.member_ids[member]
    page = console.client.get(f"/admin/sessions/{session_id}")
    assert page.status_code == 200
    assert "第一支部党员大会" in page.text
    response = console.client.post(
        f"/admin/sessions/{session_id}/manual-checkin",
        data={"employee_no": member, "reason": "忘带卡", "csrf_token": token},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "已补签" in response.text
    assert _attendance(console.database, session_id, member_id) == "present"
    assert _ledger(console.database, member_id) == [(3, "attendance", False)]
    response = console.client.post(
        f"/admin/sessions/{session_id}/void",
        data={"employee_no": member, "reason": "代签", "csrf_token": token},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert _attendance(console.database, session_id, member_id) == "absent"
    assert _ledger(console.database, member_id) == [
        (3, "attendance", False),
        (-3, "reversal", True),
    ]
    with console.database.sessions() as db:
        actions = db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert actions[-2:] == ["attendance.manual_checkin", "attendance.void"]
        assert {t.result for t in db.scalars(select(TapRecord))} == {"rejected"}


def test_leave_after_closing_reverses_the_absence(sqlite_console, branches) -> None:
    console = sqlite_console
    make_user(console.database, "admin", Role.SUPER_ADMIN)
    session_id, member = branches.session_a, "A002"
    member_id = branches.member_ids[member]
    later = console.clock.now() + timedelta(hours=6)
    console.clock.set(later)
    close(UnitOfWork(console.database.write_sessions), session_id, later, console.settings.zone)
    token = sign_in(console.client, "admin")
    assert _attendance(console.database, session_id, member_id) == "absent"
    before = _ledger(console.database, member_id)
    response = console.client.post(
        f"/admin/sessions/{session_id}/leave",
        data={"employee_no": member, "reason": "出差", "csrf_token": token},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "已登记请假" in response.text
    assert _attendance(console.database, session_id, member_id) == "excused"
    with console.database.sessions() as db:
        leave = db.scalar(select(LeaveRequestRecord))
        assert leave is not None
        assert (leave.status, leave.approver) == ("approved", "admin")
    # History is kept: the absence's cost is reversed, never edited.
    assert before == [(-2, "attendance", False)]
    assert _ledger(console.database, member_id) == [*before, (2, "reversal", True)]


def test_an_auditor_may_read_but_not_correct(sqlite_console, branches) -> None:
    console = sqlite_console
    make_user(console.database, "reader", Role.AUDITOR)
    token = sign_in(console.client, "reader")
    page = console.client.get(f"/admin/sessions/{branches.session_a}")
    assert page.status_code == 200
    assert "登记请假" not in page.text
    refused = console.client.post(
        f"/admin/sessions/{branches.session_a}/leave",
        data={"employee_no": "A001", "reason": "x", "csrf_token": token},
    )
    assert refused.status_code == 403
