"""Console users: create, list, change role or password, disable; every change audited."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.audit.chain import record_audit
from server.db.models import ConsoleUser, OrgUnit
from server.errors import Conflict, DomainError, NotFound
from server.services.auth import Role, end_sessions_of, hash_password
from server.services.unit_of_work import UnitOfWork

MIN_PASSWORD_LENGTH: Final = 10
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")


@dataclass(frozen=True)
class UserView:
    """A console user as pages show it."""

    id: int
    username: str
    role: Role
    org_unit_id: int | None
    org_unit_name: str | None
    disabled: bool
    last_login_at: datetime | None


def check_password(password: str) -> str:
    """The password if it is long enough; DomainError otherwise."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DomainError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _check_unit(db: Session, role: Role, org_unit_id: int | None) -> int | None:
    if role is not Role.ORG_ADMIN:
        return None
    if org_unit_id is None:
        raise DomainError("an org admin needs an org unit")
    if db.get(OrgUnit, org_unit_id) is None:
        raise NotFound("org unit", org_unit_id)
    return org_unit_id


def _view(db: Session, user: ConsoleUser) -> UserView:
    unit = db.get(OrgUnit, user.org_unit_id) if user.org_unit_id is not None else None
    return UserView(
        user.id,
        user.username,
        Role(user.role),
        user.org_unit_id,
        unit.name if unit else None,
        user.disabled_at is not None,
        user.last_login_at,
    )


def create_user(
    uow: UnitOfWork,
    *,
    username: str,
    password: str,
    role: Role | str,
    org_unit_id: int | None = None,
    actor: str = "system",
) -> UserView:
    """Add a console user; Conflict if the name is taken, DomainError for a bad input."""
    role = Role(role)
    username = username.strip()
    if not _USERNAME.match(username):
        raise DomainError("a username is 2–64 letters, digits or . _ @ -")
    check_password(password)
    with uow:
        db = uow.session
        unit_id = _check_unit(db, role, org_unit_id)
        if db.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username)) is not None:
            raise Conflict(f"username {username} is taken")
        user = ConsoleUser(
            username=username, password_hash=hash_password(password), role=role, org_unit_id=unit_id
        )
        db.add(user)
        try:
            db.flush()
        except IntegrityError as exc:
            raise Conflict(f"username {username} is taken") from exc
        record_audit(
            db,
            actor=actor,
            action="user.create",
            target=f"user:{username}",
            details={"role": role.value, "org_unit_id": unit_id},
        )
        view = _view(db, user)
        uow.commit()
    return view


def list_users(db: Session) -> list[UserView]:
    """Every console user by name."""
    users = db.scalars(select(ConsoleUser).order_by(ConsoleUser.username))
    return [_view(db, user) for user in users]


def get_user(db: Session, user_id: int) -> UserView:
    """One console user; NotFound if there is none."""
    user = db.get(ConsoleUser, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return _view(db, user)


def update_user(
    uow: UnitOfWork,
    user_id: int,
    *,
    role: Role | str,
    org_unit_id: int | None,
    disabled: bool,
    now: datetime,
    actor: str,
) -> UserView:
    """Change a user's role, unit or status; their sessions end so the change applies at once."""
    role = Role(role)
    with uow:
        db = uow.session
        user = db.get(ConsoleUser, user_id)
        if user is None:
            raise NotFound("user", user_id)
        if user.role == Role.SUPER_ADMIN.value and (role is not Role.SUPER_ADMIN or disabled):
            others = db.scalar(
                select(func.count()).where(
                    ConsoleUser.role == Role.SUPER_ADMIN.value,
                    ConsoleUser.disabled_at.is_(None),
                    ConsoleUser.id != user.id,
                )
            )
            if not others:
                raise Conflict("the last active super admin cannot be demoted or disabled")
        user.role = role.value
        user.org_unit_id = _check_unit(db, role, org_unit_id)
        user.disabled_at = (user.disabled_at or now) if disabled else None
        end_sessions_of(db, user.id)
        record_audit(
            db,
            actor=actor,
            action="user.update",
            target=f"user:{user.username}",
            details={"role": role.value, "org_unit_id": user.org_unit_id, "disabled": disabled},
            at=now,
        )
        view = _view(db, user)
        uow.commit()
    return view


def set_password(
    uow: UnitOfWork, user_id: int, password: str, *, now: datetime, actor: str
) -> None:
    """Give a user a new password and end their sessions."""
    check_password(password)
    with uow:
        db = uow.session
        user = db.get(ConsoleUser, user_id)
        if user is None:
            raise NotFound("user", user_id)
        user.password_hash = hash_password(password)
        end_sessions_of(db, user.id)
        record_audit(
            db,
            actor=actor,
            action="user.password",
            target=f"user:{user.username}",
            details={},
            at=now,
        )
        uow.commit()
