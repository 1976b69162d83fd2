"""Signing in and out, and the language switch."""

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from server.api.deps import RuntimeDep, UowDep
from server.services.auth import ThrottlePolicy, sign_in, sign_out
from server.web.auth import SESSION_COOKIE, OptionalPrincipalDep, web_settings
from server.web.i18n import LANG_COOKIE, LANGUAGES
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin", include_in_schema=False)

HOME: Final = "/admin/"
_YEAR: Final = 365 * 24 * 3600


def safe_next(target: str | None) -> str:
    """A redirect target inside the console; anything else (another site) goes home."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return HOME


@router.get("/login", response_class=HTMLResponse, response_model=None)
def login_form(
    request: Request, principal: OptionalPrincipalDep, next: str | None = None
) -> HTMLResponse | RedirectResponse:
    """The sign-in form (or home, if already signed in)."""
    if principal is not None:
        return redirect(safe_next(next))
    return render(request, "login.html", {"next_path": safe_next(next)})


@router.post("/login")
def login(
    *,
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = HOME,
) -> RedirectResponse:
    """Check the password and open a session; a wrong one re-shows the form."""
    settings = web_settings(request)
    opened = sign_in(
        uow,
        username=username,
        password=password,
        remote=request.client.host if request.client else "unknown",
        now=runtime.clock.now(),
        throttle=ThrottlePolicy(settings.login_max_failures, settings.login_window),
    )
    response = redirect(safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        opened.secret,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, principal: OptionalPrincipalDep, uow: UowDep) -> RedirectResponse:
    """End the session and go to the sign-in form."""
    key = getattr(request.state, "session_key", None)
    if principal is not None and isinstance(key, str):
        sign_out(uow, key)
    response = redirect("/admin/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/lang")
def switch_language(
    request: Request,
    lang: Annotated[str, Form()],
    next: Annotated[str, Form()] = HOME,
) -> RedirectResponse:
    """Remember the chosen language in a cookie and go back."""
    response = redirect(safe_next(next))
    if lang in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=_YEAR,
            samesite="lax",
            secure=web_settings(request).cookie_secure,
            path="/",
        )
    return response


@router.get("", include_in_schema=False)
def admin_root() -> RedirectResponse:
    """/admin without the slash."""
    return redirect(HOME)
