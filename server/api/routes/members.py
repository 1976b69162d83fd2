"""Members: points balance and ledger; moves between org units."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from server.api.deps import SessionDep, UowDep
from server.api.errors import NOT_FOUND, WRITE
from server.api.schemas import MemberPointsOut, MoveIn
from server.services.members import move_member
from server.services.points import member_points

router = APIRouter(prefix="/members", tags=["members"])


@router.get("/{employee_no}/points", response_model=MemberPointsOut, responses=NOT_FOUND)
def get_member_points(
    db: SessionDep,
    employee_no: Annotated[str, Path(min_length=1, max_length=32)],
    limit: Annotated[int, Query(ge=1, le=200, description="latest entries to list")] = 20,
) -> MemberPointsOut:
    """A member's points balance and latest ledger entries."""
    return MemberPointsOut.model_validate(member_points(db, employee_no, limit=limit))


@router.post("/{employee_no}/moves", status_code=status.HTTP_204_NO_CONTENT, responses=WRITE)
def move(
    employee_no: Annotated[str, Path(min_length=1, max_length=32)], body: MoveIn, uow: UowDep
) -> None:
    """Move a member to another org unit; earlier sessions keep their frozen rosters."""
    move_member(uow, employee_no, body.org_unit_code, body.at)
