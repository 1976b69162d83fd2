"""Who is asking: FastAPI dependencies for the API and the console pages.

A request is authenticated by a bearer API token (`Authorization: Bearer rct_…`)
or by the console's session cookie. Without either, a page redirects to the
sign-in form and an API request is answered 401 (see `server.web.handlers`).
"""

from typing import Annotated, Final

from fastapi import Depends, Request

from server.runtime import ServerRuntime
from server.services.auth import (
    Forbidden,
    NotSignedIn,
    Principal,
    Role,
    SessionPolicy,
    resolve_api_token,
    resolve_session,
)
from server.services.unit_of_work import UnitOfWork
from server.settings import Settings

__all__ = [
    "SESSION_COOKIE",
    "OptionalPrincipalDep",
    "Principal",
    "PrincipalDep",
    "Role",
    "SuperAdminDep",
    "WriterDep",
    "current_principal",
    "web_settings",
]

SESSION_COOKIE: Final = "rollcall_session"
_BEARER: Final = "bearer "
# Sent by pages that poll for fresh figures: such requests are not the user's activity.
POLL_HEADER: Final = "x-rollcall-poll"


def web_settings(request: Request) -> Settings:
    """The settings `install_web` was given."""
    settings = request.app.state.web_settings
    if not isinstance(settings, Settings):
        raise TypeError("app.state.web_settings is not Settings: call install_web")
    return settings


def runtime_of(request: Request) -> ServerRuntime:
    """The server runtime the app was built with."""
    runtime = request.app.state.runtime
    if not isinstance(runtime, ServerRuntime):
        raise TypeError("app.state.runtime is not a ServerRuntime")
    return runtime


def optional_principal(request: Request) -> Principal | None:
    """The principal of a bearer token or session cookie, or None; NotSignedIn for a bad token."""
    runtime = runtime_of(request)
    header = request.headers.get("authorization", "")
    if header[: len(_BEARER)].lower() == _BEARER:
        with runtime.database.sessions() as db:
            principal = resolve_api_token(db, header[len(_BEARER) :].strip())
        if principal is None:
            raise NotSignedIn("invalid or revoked API token")
        request.state.principal = principal
        return principal
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    settings = web_settings(request)
    policy = SessionPolicy(idle=settings.session_idle, absolute=settings.session_absolute)
    with runtime.database.sessions() as db:
        signed_in = resolve_session(
            db,
            UnitOfWork(runtime.database.write_sessions),
            secret,
            now=runtime.clock.now(),
            policy=policy,
            activity=POLL_HEADER not in request.headers,
        )
    if signed_in is None:
        return None
    request.state.principal = signed_in.principal
    request.state.csrf_token = signed_in.csrf_token
    request.state.session_key = signed_in.session_key
    return signed_in.principal


OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


def current_principal(principal: OptionalPrincipalDep) -> Principal:
    """The signed-in principal; NotSignedIn otherwise."""
    if principal is None:
        raise NotSignedIn("sign in first")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def writer(principal: PrincipalDep) -> Principal:
    """The principal, if it may change things; Forbidden for auditors."""
    if not principal.can_write:
        raise Forbidden("read-only role")
    return principal


WriterDep = Annotated[Principal, Depends(writer)]


def super_admin(principal: PrincipalDep) -> Principal:
    """The principal, if it is a super admin; Forbidden otherwise."""
    if principal.role is not Role.SUPER_ADMIN:
        raise Forbidden("super admins only")
    return principal


SuperAdminDep = Annotated[Principal, Depends(super_admin)]
