"""Member administration: moving a member between org units, keeping the history (audited)."""

from datetime import datetime

from sqlalchemy import select, update

from server.audit.chain import record_audit
from server.db.models import Member, MemberOrgHistory, table_of
from server.domain.roster import Membership, move
from server.errors import NotFound
from server.services.organisation import SYSTEM_ACTOR, org_unit_id
from server.services.unit_of_work import UnitOfWork


def move_member(
    uow: UnitOfWork,
    employee_no: str,
    org_unit_code: str,
    at: datetime,
    *,
    actor: str = SYSTEM_ACTOR,
) -> None:
    """Move a member to another org unit from `at`; sessions before `at` keep expecting them."""
    with uow:
        db = uow.session
        member_id = db.scalar(select(Member.id).where(Member.employee_no == employee_no))
        if member_id is None:
            raise NotFound("member with employee number", employee_no)
        connection = db.connection()
        unit_id = org_unit_id(connection, org_unit_code)
        row = db.execute(
            select(
                MemberOrgHistory.id, MemberOrgHistory.org_unit_id, MemberOrgHistory.valid_from
            ).where(MemberOrgHistory.member_id == member_id, MemberOrgHistory.valid_to.is_(None))
        ).one_or_none()
        if row is None:
            raise NotFound("current membership of", employee_no)
        ended, started = move(Membership(member_id, row[1], row[2]), unit_id, at)
        connection.execute(
            update(table_of(MemberOrgHistory))
            .where(MemberOrgHistory.id == row[0])
            .values(valid_to=ended.valid_to)
        )
        connection.execute(
            table_of(MemberOrgHistory)
            .insert()
            .values(member_id=member_id, org_unit_id=unit_id, valid_from=started.valid_from)
        )
        connection.execute(
            update(table_of(Member)).where(Member.id == member_id).values(org_unit_id=unit_id)
        )
        record_audit(
            db,
            actor=actor,
            action="member.move",
            target=f"member {employee_no}",
            details={"to": org_unit_code, "from_unit_id": row[1], "at": at.isoformat()},
        )
        uow.commit()
