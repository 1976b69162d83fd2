"""GET /api/v1/members/{employee_no}/points."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from server.api.deps import SessionDep
from server.api.errors import NOT_FOUND
from server.api.schemas import MemberPointsOut
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
