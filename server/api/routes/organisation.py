"""The organisation: org units as a tree, activity types and rooms."""

from typing import Annotated

from fastapi import APIRouter, Path, status

from server.api.deps import SessionDep, UowDep
from server.api.errors import NOT_FOUND, WRITE
from server.api.schemas import (
    ActivityTypeIn,
    ActivityTypeOut,
    OrgUnitIn,
    OrgUnitOut,
    OrgUnitRenameIn,
    RoomIn,
    RoomOut,
)
from server.services import organisation

router = APIRouter()
Code = Annotated[str, Path(min_length=1, max_length=32)]


@router.post(
    "/org-units",
    response_model=OrgUnitOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    tags=["org-units"],
)
def create_org_unit(body: OrgUnitIn, uow: UowDep) -> OrgUnitOut:
    """Add an org unit (委员会, 支部, 党小组 …) under a parent, or at the top."""
    created = organisation.create_org_unit(uow, body.code, body.name, body.parent_code)
    return OrgUnitOut.model_validate(created)


@router.get("/org-units", response_model=list[OrgUnitOut], tags=["org-units"])
def list_org_units(db: SessionDep) -> list[OrgUnitOut]:
    """The whole organisation as a tree: top units, each with its sub-units nested."""
    return [OrgUnitOut.model_validate(u) for u in organisation.org_tree(db)]


@router.get("/org-units/{code}", response_model=OrgUnitOut, responses=NOT_FOUND, tags=["org-units"])
def get_org_unit(code: Code, db: SessionDep) -> OrgUnitOut:
    """One org unit with its sub-units."""
    return OrgUnitOut.model_validate(organisation.org_unit(db, code))


@router.patch("/org-units/{code}", response_model=OrgUnitOut, responses=WRITE, tags=["org-units"])
def rename_org_unit(code: Code, body: OrgUnitRenameIn, uow: UowDep) -> OrgUnitOut:
    """Rename an org unit; its code, place in the tree and history stay."""
    return OrgUnitOut.model_validate(organisation.rename_org_unit(uow, code, body.name))


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
def create_activity_type(body: ActivityTypeIn, uow: UowDep) -> ActivityTypeOut:
    """Add a user-defined activity type with its category and tap-time points."""
    created = organisation.create_activity_type(
        uow, organisation.ActivityTypeView(**body.model_dump())
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
def create_room(body: RoomIn, uow: UowDep) -> RoomOut:
    """Add a room sessions can be held in and readers mounted."""
    return RoomOut.model_validate(organisation.create_room(uow, body.code, body.name))
