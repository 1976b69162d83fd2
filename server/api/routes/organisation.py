"""The organisation: org units as a tree, member categories, activity types and rooms."""

from typing import Annotated

from fastapi import APIRouter, Path, status

from server.api.auth import PrincipalDep
from server.api.deps import ActorDep, SessionDep, UowDep
from server.api.errors import NOT_FOUND, WRITE
from server.api.schemas import (
    ActivityTypeIn,
    ActivityTypeOut,
    MemberCategoryIn,
    MemberCategoryOut,
    MemberCategoryUpdateIn,
    OrgUnitIn,
    OrgUnitOut,
    OrgUnitUpdateIn,
    RoomIn,
    RoomOut,
)
from server.services import organisation
from server.services.auth_scope import narrowed_unit_code

router = APIRouter()
Code = Annotated[str, Path(min_length=1, max_length=32)]
CategoryName = Annotated[str, Path(min_length=1, max_length=32)]


@router.post(
    "/org-units",
    response_model=OrgUnitOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    tags=["org-units"],
)
def create_org_unit(body: OrgUnitIn, uow: UowDep, actor: ActorDep) -> OrgUnitOut:
    """Add an org unit (委员会, 支部, 党小组 …) under a parent, or at the top."""
    created = organisation.create_org_unit(uow, body.code, body.name, body.parent_code, actor=actor)
    return OrgUnitOut.model_validate(created)


@router.get("/org-units", response_model=list[OrgUnitOut], tags=["org-units"])
def list_org_units(db: SessionDep, principal: PrincipalDep) -> list[OrgUnitOut]:
    """The whole organisation as a tree (an org admin: its own unit and those below)."""
    root = narrowed_unit_code(db.connection(), principal, None)
    if root is not None and principal.scope_unit_ids is not None:
        return [OrgUnitOut.model_validate(organisation.org_unit(db, root))]
    return [OrgUnitOut.model_validate(u) for u in organisation.org_tree(db)]


@router.get("/org-units/{code}", response_model=OrgUnitOut, responses=NOT_FOUND, tags=["org-units"])
def get_org_unit(code: Code, db: SessionDep) -> OrgUnitOut:
    """One org unit with its sub-units."""
    return OrgUnitOut.model_validate(organisation.org_unit(db, code))


@router.patch("/org-units/{code}", response_model=OrgUnitOut, responses=WRITE, tags=["org-units"])
def change_org_unit(code: Code, body: OrgUnitUpdateIn, uow: UowDep, actor: ActorDep) -> OrgUnitOut:
    """Rename an org unit and/or move it under another parent (409 on a cycle).

    Its code, members, sub-units and history stay with it.
    """
    changes = organisation.OrgUnitChanges(
        name=body.name, move="parent_code" in body.model_fields_set, parent_code=body.parent_code
    )
    return OrgUnitOut.model_validate(organisation.change_org_unit(uow, code, changes, actor=actor))


@router.delete(
    "/org-units/{code}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=WRITE,
    tags=["org-units"],
)
def delete_org_unit(code: Code, uow: UowDep, actor: ActorDep) -> None:
    """Delete an org unit; 409 while sub-units, members, their history or sessions refer to it."""
    organisation.delete_org_unit(uow, code, actor=actor)


@router.get(
    "/member-categories", response_model=list[MemberCategoryOut], tags=["member-categories"]
)
def list_member_categories(db: SessionDep) -> list[MemberCategoryOut]:
    """Every member category (正式党员, 预备党员 …) in display order, with member counts."""
    return [MemberCategoryOut.model_validate(c) for c in organisation.member_categories(db)]


@router.get(
    "/member-categories/{name}",
    response_model=MemberCategoryOut,
    responses=NOT_FOUND,
    tags=["member-categories"],
)
def get_member_category(name: CategoryName, db: SessionDep) -> MemberCategoryOut:
    """One member category."""
    return MemberCategoryOut.model_validate(organisation.member_category(db, name))


@router.post(
    "/member-categories",
    response_model=MemberCategoryOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    tags=["member-categories"],
)
def create_member_category(
    body: MemberCategoryIn, uow: UowDep, actor: ActorDep
) -> MemberCategoryOut:
    """Add a member category; 409 if the name exists."""
    created = organisation.create_member_category(uow, body.name, body.position, actor=actor)
    return MemberCategoryOut.model_validate(created)


@router.patch(
    "/member-categories/{name}",
    response_model=MemberCategoryOut,
    responses=WRITE,
    tags=["member-categories"],
)
def change_member_category(
    name: CategoryName, body: MemberCategoryUpdateIn, uow: UowDep, actor: ActorDep
) -> MemberCategoryOut:
    """Rename a member category (its members follow) or move it in the list."""
    changed = organisation.change_member_category(
        uow, name, new_name=body.name, position=body.position, actor=actor
    )
    return MemberCategoryOut.model_validate(changed)


@router.delete(
    "/member-categories/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=WRITE,
    tags=["member-categories"],
)
def delete_member_category(name: CategoryName, uow: UowDep, actor: ActorDep) -> None:
    """Delete a member category; 409 while any member holds it."""
    organisation.delete_member_category(uow, name, actor=actor)


@router.get("/activity-types", response_model=list[ActivityTypeOut], tags=["activity-types"])
def list_activity_types(db: SessionDep) -> list[ActivityTypeOut]:
    """Every activity type, built-in and user-defined."""
    return [ActivityTypeOut.model_validate(a) for a in organisation.activity_types(db)]


@router.post(
    "/activity-types",
    response_model=ActivityTypeOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    tags=["activity-types"],
)
def create_activity_type(body: ActivityTypeIn, uow: UowDep, actor: ActorDep) -> ActivityTypeOut:
    """Add a user-defined activity type with its (cap) category and tap-time points."""
    created = organisation.create_activity_type(
        uow, organisation.ActivityTypeView(**body.model_dump()), actor=actor
    )
    return ActivityTypeOut.model_validate(created)


@router.get("/rooms", response_model=list[RoomOut], tags=["rooms"])
def list_rooms(db: SessionDep) -> list[RoomOut]:
    """Every room."""
    return [RoomOut.model_validate(r) for r in organisation.rooms(db)]


@router.post(
    "/rooms",
    response_model=RoomOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    tags=["rooms"],
)
def create_room(body: RoomIn, uow: UowDep, actor: ActorDep) -> RoomOut:
    """Add a room sessions can be held in and readers mounted."""
    return RoomOut.model_validate(organisation.create_room(uow, body.code, body.name, actor=actor))
