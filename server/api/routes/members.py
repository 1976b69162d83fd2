"""Members: create, read, change, search; points balance and ledger; moves between org units."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from server.api.auth import PrincipalDep
from server.api.deps import ActorDep, RuntimeDep, SessionDep, UowDep
from server.api.errors import NOT_FOUND, WRITE
from server.api.schemas import MemberIn, MemberOut, MemberPointsOut, MemberUpdateIn, MoveIn
from server.services import organisation
from server.services.auth_scope import narrowed_unit_code
from server.services.members import move_member
from server.services.points import member_points

router = APIRouter(prefix="/members", tags=["members"])
EmployeeNo = Annotated[str, Path(min_length=1, max_length=32)]


@router.post("", response_model=MemberOut, status_code=status.HTTP_201_CREATED, responses=WRITE)
def create_member(body: MemberIn, uow: UowDep, runtime: RuntimeDep, actor: ActorDep) -> MemberOut:
    """Add a member to an org unit; 409 if the number is taken, 422 for an unknown category."""
    created = organisation.create_member(
        uow,
        organisation.NewMember(**body.model_dump()),
        runtime.clock.now(),
        runtime.settings.zone,
        actor=actor,
    )
    return MemberOut.model_validate(created)


@router.get("", response_model=list[MemberOut], responses=NOT_FOUND)
def search_members(
    db: SessionDep,
    principal: PrincipalDep,
    *,
    org_unit: Annotated[
        str | None, Query(min_length=1, max_length=32, description="org unit code")
    ] = None,
    include_sub_units: Annotated[bool, Query(description="also members of sub-units")] = True,
    q: Annotated[
        str | None, Query(min_length=1, max_length=100, description="part of name or number")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[MemberOut]:
    """Members by org unit and by part of their name or employee number."""
    found = organisation.search_members(
        db,
        # An org admin lists its own subtree at most.
        org_unit_code=narrowed_unit_code(db.connection(), principal, org_unit),
        include_sub_units=include_sub_units,
        text=q,
        limit=limit,
        offset=offset,
    )
    return [MemberOut.model_validate(m) for m in found]


@router.get("/{employee_no}", response_model=MemberOut, responses=NOT_FOUND)
def get_member(employee_no: EmployeeNo, db: SessionDep) -> MemberOut:
    """One member by employee number."""
    return MemberOut.model_validate(organisation.member(db, employee_no))


@router.patch("/{employee_no}", response_model=MemberOut, responses=WRITE)
def update_member(
    employee_no: EmployeeNo, body: MemberUpdateIn, uow: UowDep, actor: ActorDep
) -> MemberOut:
    """Change a member's name, category (422 if unknown) or last active day (moves use /moves)."""
    changes = organisation.MemberChanges(
        name=body.name,
        category=body.category,
        set_active_to="active_to" in body.model_fields_set,
        active_to=body.active_to,
    )
    return MemberOut.model_validate(
        organisation.update_member(uow, employee_no, changes, actor=actor)
    )


@router.get("/{employee_no}/points", response_model=MemberPointsOut, responses=NOT_FOUND)
def get_member_points(
    db: SessionDep,
    employee_no: EmployeeNo,
    limit: Annotated[int, Query(ge=1, le=200, description="latest entries to list")] = 20,
) -> MemberPointsOut:
    """A member's points balance and latest ledger entries."""
    return MemberPointsOut.model_validate(member_points(db, employee_no, limit=limit))


@router.post("/{employee_no}/moves", status_code=status.HTTP_204_NO_CONTENT, responses=WRITE)
def move(employee_no: EmployeeNo, body: MoveIn, uow: UowDep, actor: ActorDep) -> None:
    """Move a member to another org unit; earlier sessions keep their frozen rosters."""
    move_member(uow, employee_no, body.org_unit_code, body.at, actor=actor)
