"""The strong card tier: where it is required, and the suspected-clone inbox."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from server.api.deps import ActorDep, SessionDep, UowDep
from server.api.errors import WRITE
from server.services import cardauth

router = APIRouter(tags=["cards"])


class StrongTierOut(BaseModel):
    """Codes of the rooms and activity types that accept only cards answering their challenge."""

    rooms: list[str]
    activity_types: list[str]


class StrongTierIn(BaseModel):
    """Whether the strong tier is required."""

    model_config = ConfigDict(extra="forbid")

    required: bool


class SuspectedCloneOut(BaseModel):
    """A card refused where the strong tier is required: a clone, or a card never keyed."""

    card_id: int
    tech: str
    uid: str
    first_seen_at: datetime
    last_seen_at: datetime
    tap_count: int
    last_reader_id: str | None
    last_reason: str | None
    resolved: bool


Code = Annotated[str, Path(min_length=1, max_length=32)]


@router.get("/strong-tier", response_model=StrongTierOut)
def get_strong_tier(db: SessionDep) -> StrongTierOut:
    """Where the strong card tier is required."""
    rooms, types = cardauth.strong_tier_requirements(db)
    return StrongTierOut(rooms=rooms, activity_types=types)


@router.put("/rooms/{code}/strong-tier", response_model=StrongTierOut, responses=WRITE)
def put_room_strong_tier(
    code: Code, body: StrongTierIn, uow: UowDep, actor: ActorDep
) -> StrongTierOut:
    """Require (or stop requiring) the strong tier in a room; audited."""
    with uow:
        cardauth.set_room_requirement(uow.session, code, required=body.required, actor=actor)
        rooms, types = cardauth.strong_tier_requirements(uow.session)
        uow.commit()
    return StrongTierOut(rooms=rooms, activity_types=types)


@router.put("/activity-types/{code}/strong-tier", response_model=StrongTierOut, responses=WRITE)
def put_activity_type_strong_tier(
    code: Code, body: StrongTierIn, uow: UowDep, actor: ActorDep
) -> StrongTierOut:
    """Require (or stop requiring) the strong tier for an activity type's sessions; audited."""
    with uow:
        cardauth.set_activity_type_requirement(
            uow.session, code, required=body.required, actor=actor
        )
        rooms, types = cardauth.strong_tier_requirements(uow.session)
        uow.commit()
    return StrongTierOut(rooms=rooms, activity_types=types)


@router.get("/cards/suspected-clones", response_model=list[SuspectedCloneOut])
def get_suspected_clones(db: SessionDep, include_resolved: bool = False) -> list[SuspectedCloneOut]:
    """The suspected-clone inbox, most recently seen first."""
    listing = cardauth.list_suspected_clones(db, include_resolved=include_resolved)
    return [SuspectedCloneOut.model_validate(c, from_attributes=True) for c in listing]
