"""Who is asking: console sign-in, server-side web sessions, login throttling, API tokens.

AuthError
├── NotSignedIn      no valid session or token (a page redirects to sign-in; the API says 401)
├── Forbidden        signed in, but the role may not do this (403)
├── BadCredentials   a wrong username or password (the form says so, nothing else)
├── Throttled        too many wrong passwords lately (429)
└── CsrfRejected     a state-changing request without the session's CSRF token (403)

Secrets (session cookies, API tokens) are random and stored only as SHA-256, so a
copy of the database lets nobody sign in. Passwords are argon2id hashes.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.orm import Session

from server.audit.chain import record_audit
from server.db import lookups
from server.db.models import ApiToken, ConsoleUser, LoginFailure, OrgUnit, WebSession
from server.errors import DomainError, NotFound, RollcallError
from server.services.unit_of_work import UnitOfWork

API_TOKEN_PREFIX: Final = "rct_"  # noqa: S105 (a marker, not a secret)
# A hash to verify against when the username is unknown, so timing says nothing.
_HASHER = PasswordHasher()
_DUMMY_HASH: Final = _HASHER.hash("rollcall-no-such-user")
# last_seen_at is written at most this often, so reading pages is not a write each time.
_TOUCH_EVERY: Final = timedelta(seconds=30)


class AuthError(RollcallError):
    """Base of the sign-in and authorisation errors."""


class NotSignedIn(AuthError):
    """No valid session or token."""


class Forbidden(AuthError):
    """The principal's role does not allow this."""


class BadCredentials(AuthError):
    """A wrong username or password."""


class Throttled(AuthError):
    """Too many wrong passwords in the window; `retry_after` is in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed sign-ins; try again later")
        self.retry_after = retry_after


class CsrfRejected(AuthError):
    """A state-changing request without a matching CSRF token."""


class Role(StrEnum):
    """What a console user or API token may do."""

    SUPER_ADMIN = "super_admin"
    ORG_ADMIN = "org_admin"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class Principal:
    """The signed-in user (or API token) and the org units it may see."""

    user_id: int
    username: str
    role: Role
    # None: the whole organisation; otherwise the ids of the admin's subtree.
    scope_unit_ids: frozenset[int] | None

    @property
    def can_write(self) -> bool:
        """Whether this principal may change anything (auditors may not)."""
        return self.role is not Role.AUDITOR

    @property
    def is_super_admin(self) -> bool:
        """Whether this principal runs the whole console."""
        return self.role is Role.SUPER_ADMIN

    def allows_unit(self, unit_id: int | None) -> bool:
        """Whether an object of this org unit is within the principal's scope."""
        if self.scope_unit_ids is None:
            return True
        return unit_id is not None and unit_id in self.scope_unit_ids


@dataclass(frozen=True)
class SessionPolicy:
    """How long a web session lasts, idle and at most."""

    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many wrong passwords per username or address a window allows."""

    max_failures: int
    window: timedelta


@dataclass(frozen=True)
class SignedIn:
    """A resolved web session: who, and the token its forms must carry."""

    principal: Principal
    csrf_token: str
    session_key: str


@dataclass(frozen=True)
class NewSession:
    """A web session just made: the cookie's secret and the CSRF token."""

    secret: str
    csrf_token: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """The argon2id hash of a password."""
    return _HASHER.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    """Whether the password fits the hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def scope_of(connection: Connection, role: Role, org_unit_id: int | None) -> frozenset[int] | None:
    """The org units a role anchored at a unit may see (None: everything)."""
    if role is not Role.ORG_ADMIN:
        return None
    if org_unit_id is None:
        return frozenset()
    return lookups.org_tree(connection).subtree(org_unit_id)


def _principal(connection: Connection, user: ConsoleUser) -> Principal:
    role = Role(user.role)
    return Principal(user.id, user.username, role, scope_of(connection, role, user.org_unit_id))


def _check_throttle(
    db: Session, username: str, remote: str, now: datetime, policy: ThrottlePolicy
) -> None:
    since = now - policy.window
    for column, value in ((LoginFailure.username, username), (LoginFailure.remote, remote)):
        row = db.execute(
            select(func.count(), func.min(LoginFailure.at)).where(
                column == value, LoginFailure.at > since
            )
        ).one()
        count, oldest = row
        if count >= policy.max_failures:
            wait = (oldest + policy.window - now).total_seconds() if oldest else 1
            raise Throttled(max(1, int(wait) + 1))


def sign_in(
    uow: UnitOfWork,
    *,
    username: str,
    password: str,
    remote: str,
    now: datetime,
    throttle: ThrottlePolicy,
) -> NewSession:
    """Check a username and password and open a web session; BadCredentials or Throttled."""
    username = username.strip()[:64]
    remote = remote[:64]
    with uow:
        db = uow.session
        _check_throttle(db, username, remote, now, throttle)
        user = db.scalar(select(ConsoleUser).where(ConsoleUser.username == username))
        valid = password_matches(user.password_hash if user else _DUMMY_HASH, password)
        if user is None or not valid or user.disabled_at is not None:
            db.add(LoginFailure(username=username, remote=remote, at=now))
            # Old failures only matter for the window; drop them as we go.
            db.execute(delete(LoginFailure).where(LoginFailure.at < now - timedelta(days=1)))
            uow.commit()
            raise BadCredentials("wrong username or password")
        if _HASHER.check_needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user.last_login_at = now
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        db.add(
            WebSession(
                id=_digest(secret),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
            )
        )
        uow.commit()
    return NewSession(secret, csrf)


def resolve_session(
    db: Session,
    uow: UnitOfWork,
    secret: str,
    *,
    now: datetime,
    policy: SessionPolicy,
    activity: bool = True,
) -> SignedIn | None:
    """The signed-in user of a session cookie, or None if it is unknown, expired or disabled.

    Reads with `db`; writes (ending an expired session, noting activity) only when needed,
    so reading pages does not take SQLite's write lock each time. A request that is
    not the user's doing (`activity=False`: a page polling for fresh counts) does not
    keep the session from going idle.
    """
    key = _digest(secret)
    row = db.execute(
        select(WebSession, ConsoleUser)
        .join(ConsoleUser, ConsoleUser.id == WebSession.user_id)
        .where(WebSession.id == key)
    ).first()
    if row is None:
        return None
    web_session, user = row
    expired = (
        now - web_session.last_seen_at > policy.idle
        or now - web_session.created_at > policy.absolute
    )
    if expired or user.disabled_at is not None:
        sign_out(uow, key)
        return None
    if activity and now - web_session.last_seen_at > _TOUCH_EVERY:
        with uow:
            uow.session.execute(
                update(WebSession).where(WebSession.id == key).values(last_seen_at=now)
            )
            uow.commit()
    return SignedIn(_principal(db.connection(), user), web_session.csrf_token, key)


def session_csrf_token(db: Session, secret: str) -> str | None:
    """The CSRF token of a session cookie's session, if the session exists."""
    return db.scalar(select(WebSession.csrf_token).where(WebSession.id == _digest(secret)))


def sign_out(uow: UnitOfWork, session_key: str) -> None:
    """End a web session."""
    with uow:
        uow.session.execute(delete(WebSession).where(WebSession.id == session_key))
        uow.commit()


def end_sessions_of(db: Session, user_id: int) -> None:
    """End every web session of a user (after a password, role or status change)."""
    db.execute(delete(WebSession).where(WebSession.user_id == user_id))


@dataclass(frozen=True)
class NewApiToken:
    """A token just made; `secret` is shown once and never stored."""

    token_id: int
    secret: str


def create_api_token(
    uow: UnitOfWork,
    *,
    name: str,
    role: Role,
    org_unit_code: str | None = None,
    actor: str = "system",
) -> NewApiToken:
    """Make a bearer token for an integration (audited); an org admin token needs an org unit."""
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with uow:
        db = uow.session
        unit_id = unit_for_role(db, role, org_unit_code)
        token = ApiToken(
            name=name.strip()[:100] or "token",
            token_hash=_digest(secret),
            role=role.value,
            org_unit_id=unit_id,
        )
        db.add(token)
        db.flush()
        token_id = token.id
        record_audit(
            db,
            actor=actor,
            action="token.create",
            target=f"token {token_id}",
            details={"name": token.name, "role": role.value, "org_unit": org_unit_code},
        )
        uow.commit()
    return NewApiToken(token_id, secret)


def revoke_api_token(uow: UnitOfWork, token_id: int, now: datetime, *, actor: str) -> bool:
    """Revoke a token (audited); False if there is no such live token."""
    with uow:
        result = uow.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        revoked = bool(getattr(result, "rowcount", 0))
        if revoked:
            record_audit(
                uow.session,
                actor=actor,
                action="token.revoke",
                target=f"token {token_id}",
                details={},
                at=now,
            )
        uow.commit()
    return revoked


def resolve_api_token(db: Session, secret: str) -> Principal | None:
    """The principal of a bearer token, or None if it is unknown or revoked."""
    token = db.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == _digest(secret), ApiToken.revoked_at.is_(None)
        )
    )
    if token is None:
        return None
    role = Role(token.role)
    # Negative ids keep tokens apart from console users in anything keyed by user_id.
    return Principal(
        -token.id, f"token:{token.name}", role, scope_of(db.connection(), role, token.org_unit_id)
    )


def unit_for_role(db: Session, role: Role, org_unit_code: str | None) -> int | None:
    """The org unit id a role is anchored at; only org admins have (and need) one."""
    if role is not Role.ORG_ADMIN:
        if org_unit_code is not None:
            raise DomainError("only an org admin is tied to an org unit")
        return None
    if not org_unit_code:
        raise DomainError("an org admin needs an org unit")
    unit_id = db.scalar(select(OrgUnit.id).where(OrgUnit.code == org_unit_code))
    if unit_id is None:
        raise NotFound("org unit", org_unit_code)
    return unit_id
